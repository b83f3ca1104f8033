"""Section 4 of the paper: zero-shot classifiers, coarse unit selection, ResiDual and its linear and finetuning
baselines, their training loop, and the per-task runs that tie them to the unit caches.

Layer 5: may import analysis (ResiDual's bases are the units' principal components) and everything below it.
"""
