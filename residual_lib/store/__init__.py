"""What is computed once and kept on disk: the hashed, resumable unit cache (a model run over a dataset), the
stored results of trained methods, and the jobs that fill both in other processes (local or Slurm, via submitit).

Layer 3: imports models, data, units and the base modules.
"""
