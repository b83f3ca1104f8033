"""Device choice: CUDA when present, CPU otherwise, overridable by name; and the CPU's thread pools."""

from contextlib import contextmanager
from typing import Iterator

import torch

VALID_DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map 'auto' to CUDA when available, else CPU; reject names that are not devices."""
    if isinstance(device, torch.device):
        return device
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in VALID_DEVICES:
        raise ValueError(f"unknown device {name!r}; valid: {', '.join(VALID_DEVICES)} (optionally 'cuda:N')")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(name)


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Inside the block, torch, BLAS and OpenMP use at most `n` CPU threads (None: leave them as they are).

    Work made of many small operations (a toy model's forward pass, per-head PCA, pursuits, probes) runs faster
    on one thread than on two once the machine is busy: every parallel operation waits for a second thread the
    scheduler may not run for milliseconds (toy CLIP, 1,000 images on a loaded 2-core machine: 0.7 CPU-s on
    one thread, 7.2 on two).
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads={n!r}; must be a positive integer or None")
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
