"""Where the project keeps what it builds (caches, checkpoints, downloads)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = REPO_ROOT / "data_manifests"


def artifacts_dir() -> Path:
    """Root of every build output; `RESIDUAL_ARTIFACTS` moves it (tests point it at a temporary folder)."""
    return Path(os.environ.get("RESIDUAL_ARTIFACTS", REPO_ROOT / "artifacts"))
