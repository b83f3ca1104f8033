"""Device choice: CUDA when present, CPU otherwise, overridable by name."""

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
