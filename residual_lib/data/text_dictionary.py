"""Text dictionaries for TextSpan / SOMP, resolved by name.

- ``toy``: the toy world's descriptions (`residual_lib.toy.dictionary.text_dictionary`).
- ``gandelsman-general``: the general image descriptions of Gandelsman et al. (the paper's dictionary),
  downloaded at run time from GitHub at a pinned commit into ``artifacts_dir()/downloads/``, verified by
  sha256, never committed.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_file, sha256_file
from ..paths import artifacts_dir


@dataclass(frozen=True)
class RemoteText:
    """A text file at a pinned commit of a public repository, checked by its sha256."""

    repo: str
    commit: str
    path: str
    sha256: str
    filename: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"


GANDELSMAN_GENERAL = RemoteText(
    repo="yossigandelsman/clip_text_span",
    commit="49f70f31bb13437a870ff8de340626b225500a22",
    path="text_descriptions/image_descriptions_general.txt",
    sha256="39c6bf3e788684d9e0e8afa902c13aae1ee8eafefdbab94ba923fd05b9038630",
    filename="gandelsman_image_descriptions_general.txt",
)
REMOTE_DICTIONARIES = {"gandelsman-general": GANDELSMAN_GENERAL}
# name -> "module:function" returning the descriptions; providers above this layer (the toy world) register here
LOCAL_DICTIONARIES = {"toy": "residual_lib.toy.dictionary:text_dictionary"}
DICTIONARIES = (*LOCAL_DICTIONARIES, *REMOTE_DICTIONARIES)


class DictionaryUnavailableError(FileNotFoundError):
    """A remote dictionary is not in the download folder and cannot be fetched; the message says what to do."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _offline() -> bool:
    return os.environ.get("RESIDUAL_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def fetch_remote_text(remote: RemoteText, name: str) -> Path:
    """Path of the verified local copy of `remote`, downloading it once into artifacts_dir()/downloads/."""
    target = artifacts_dir() / "downloads" / remote.filename
    if target.exists():
        digest = sha256_file(target)
        if digest == remote.sha256:
            return target
        raise ValueError(f"text dictionary {name!r}: {target} has sha256 {digest}, expected {remote.sha256}; "
                         f"delete the file to download it again")
    todo = (f"Download {remote.url} by hand to {target} (sha256 {remote.sha256}), or run with network access.")
    if _offline():
        raise DictionaryUnavailableError(f"text dictionary {name!r} is not downloaded and RESIDUAL_OFFLINE is set. {todo}")
    try:
        data = _fetch(remote.url)
    except OSError as failed:  # URLError, HTTPError and socket timeouts are all OSErrors
        raise DictionaryUnavailableError(f"text dictionary {name!r}: download of {remote.url} failed "
                                         f"({type(failed).__name__}: {failed}). {todo}") from failed
    digest = _sha256(data)
    if digest != remote.sha256:
        raise ValueError(f"text dictionary {name!r}: {remote.url} has sha256 {digest}, expected {remote.sha256}; "
                         f"not saved")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as partial:
        partial.write_bytes(data)
    return target


def text_dictionary(name: str) -> list[str]:
    """The descriptions of dictionary `name` (one per entry, file order, blank lines dropped)."""
    if name in LOCAL_DICTIONARIES:
        module, function = LOCAL_DICTIONARIES[name].split(":")
        return list(getattr(importlib.import_module(module), function)())
    if name not in REMOTE_DICTIONARIES:
        raise KeyError(f"unknown text dictionary {name!r}; valid: {', '.join(DICTIONARIES)}")
    path = fetch_remote_text(REMOTE_DICTIONARIES[name], name)
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
