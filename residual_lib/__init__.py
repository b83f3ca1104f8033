"""residual_lib: residual decomposition of vision transformers and the analyses of the ResiDual paper."""

import importlib

from .version import __version__

# The public surface (each subpackage's docstring says what it holds and which layers it may import), imported on
# first use: importing the package, or a light part of it such as the book runner, does not load torch and the
# model libraries (about 6 s on a 2-core machine, paid by every book command, worker process and notebook kernel).
_PUBLIC = {"UnitCache": "store.cache", "extract": "store.cache", "list_models": "models.registry",
           "load_model": "models.registry", "register_model": "models.registry", "list_datasets": "data.datasets",
           "load_dataset": "data.datasets", "decompose": "units.decompose", "decomposition_error": "units.decompose"}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
