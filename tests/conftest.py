"""Shared fixtures of the three test tiers: a throwaway artifacts folder and a throwaway book project.

tests/unit: the library, fast; tests/integration: models, experiments, the planner and the job engine end to
end; tests/book: the runner, the pages, the site. `pytest tests/unit` is the quick loop; `make test` runs all.

The expensive fixtures are per session: the smoke model is trained once, the smoke book is built once, and the
experiment tests run in the artifacts folder the book filled, so they read its caches and stored training back.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from residual_lib.paths import REPO_ROOT

# The shared helpers (unit_fixtures, experiment_smoke, browser, ...) live here, beside the three tiers' folders.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Figures render off-screen in tests, whatever the machine's display.
os.environ.setdefault("MPLBACKEND", "Agg")

# What the smoke session's artifacts folder takes from the user's: downloads (weights, datasets, dictionaries) and
# the toy world's drawn image pools, all keyed by what they hold.
SHARED_DOWNLOADS = ("models", "data", "downloads", "toy_images")


@pytest.fixture
def tmp_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `residual_lib.paths.artifacts_dir()` at an empty temporary folder."""
    folder = tmp_path / "artifacts"
    folder.mkdir()
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(folder))
    return folder


@pytest.fixture
def book_project(tmp_path: Path):
    """Factory for a minimal project (the repo's book config, given notebooks and smoke parameters)."""

    def make(notebooks: dict[str, str], params: dict[str, str] | None = None, defaults: str = "") -> Path:
        root = tmp_path / "project"
        (root / "book").mkdir(parents=True)
        shutil.copy(REPO_ROOT / "book" / "_config.yml", root / "book" / "_config.yml")
        shutil.copytree(REPO_ROOT / "book" / "_static", root / "book" / "_static")
        (root / "book" / "intro.md").write_text("# Test book\n")
        chapters = "".join(f"      - file: notebooks/{name}\n" for name in notebooks)
        (root / "book" / "_toc.yml").write_text(
            f"format: jb-book\nroot: intro\nparts:\n  - caption: Notebooks\n    chapters:\n{chapters}")
        folder = root / "notebooks" / "params" / "smoke"
        folder.mkdir(parents=True)
        for name, source in notebooks.items():
            (root / "notebooks" / f"{name}.py").write_text(textwrap.dedent(source))
            (folder / f"{name}.yaml").write_text((params or {}).get(name, "{}\n"))
        if defaults:
            (folder / "_defaults.yaml").write_text(defaults)
        return root

    return make


@pytest.fixture(scope="session")
def smoke_model_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's throwaway artifacts folder of the smoke profile: the smoke book's build trains the smoke model
    into it (as `make book` does, beside the pages that read no toy model) and fills its caches; the tests that run
    the smoke model share it, so they read those back (one that runs before the book trains the model itself,
    `toy.train.ensure_model`). The user's download folders and drawn toy images are linked, so the session
    downloads and draws nothing twice."""
    from residual_lib.paths import artifacts_dir

    folder = tmp_path_factory.mktemp("smoke-artifacts")
    for name in SHARED_DOWNLOADS:
        (artifacts_dir() / name).mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(artifacts_dir() / name)
    return folder


@pytest.fixture
def smoke_artifacts(smoke_model_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's smoke artifacts folder as this test's `residual_lib.paths.artifacts_dir()`."""
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(smoke_model_artifacts))
    return smoke_model_artifacts


@pytest.fixture(scope="session")
def smoke_book(smoke_model_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a temporary project holding this repo's book and notebooks, built once in the smoke profile (two
    pages at a time, the smoke model trained inside, as `make book` runs them) into the session's smoke artifacts
    folder."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(REPO_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build", "_generated", "notebooks"))
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    proc = subprocess.run([sys.executable, "-m", "residual_lib.book", "build", "--profile", "smoke", "--jobs", "2",
                           "--root", str(root), "--quiet"],
                          env={**os.environ, "RESIDUAL_ARTIFACTS": str(smoke_model_artifacts)},
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"smoke book build failed:\n{proc.stderr[-6000:]}"
    from residual_lib.toy.train import CONFIGS, is_current

    assert is_current(smoke_model_artifacts / "toy" / "smoke", CONFIGS["smoke"]), "the build trained no smoke model"
    return root
