"""The paper profile at scale: plan one job per unit cache and trained result the pages read, run them through
the job engine (`residual_lib.store.jobs`), locally or on Slurm (`python -m residual_lib.reproduce`).

Top layer: reads the experiments' `caches(params)` and the book's parameter files.
"""
