"""Expensive per-(model, task) results (trained methods), computed once, stored under the artifacts folder, reused.

A training job of the paper profile (`residual_lib.store.jobs.TrainJob`) and the experiment's `run` call the same
function with the same key, so `run` reads what a cluster job trained instead of training again. The key is
every parameter that decides the result (never the device: a result trained on a GPU serves a CPU build). A stored
file that cannot be read (cut short by a full disk, say) is named and computed again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, Callable, TypeVar

import torch

from ..files import DamagedFileError, atomic_file, file_lock, read, write_text
from ..paths import artifacts_dir
from ..version import __version__

T = TypeVar("T")


def stored_path(kind: str, key: dict[str, Any]) -> Path:
    """`<artifacts>/trained/<kind>/<sha256 of the key, 16 hex>.pt` (its key beside it as .json)."""
    text = json.dumps({**key, "library_version": __version__}, sort_keys=True, default=str)
    return artifacts_dir() / "trained" / kind / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def is_stored(kind: str, key: dict[str, Any]) -> bool:
    """Whether a result for this key is on disk."""
    return stored_path(kind, key).is_file()


def stored(kind: str, key: dict[str, Any], compute: Callable[[], T]) -> T:
    """The stored result for `key`, or `compute()` saved atomically (a killed run leaves no partial file).

    Callers of one key wait for each other (a page and the book runner's early job for it): one computes, the
    others read what it stored."""
    path = stored_path(kind, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            try:  # our own pickles: trained modules and their records
                return read(path, lambda p: torch.load(p, weights_only=False),
                            (RuntimeError, EOFError, UnpicklingError))
            except DamagedFileError as err:
                print(f"stored result: {err}; computing it again", file=sys.stderr, flush=True)
        value = compute()
        with atomic_file(path) as tmp:
            torch.save(value, tmp)
        write_text(path.with_suffix(".json"), json.dumps(key, indent=1, sort_keys=True, default=str))
    return value
