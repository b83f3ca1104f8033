"""Shared fixtures of the three test tiers: a throwaway artifacts folder and a throwaway book project.

tests/unit: the library, fast; tests/integration: models, experiments, the planner and the job engine end to
end; tests/book: the runner, the pages, the site. `pytest tests/unit` is the quick loop; `make test` runs all.
"""

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from residual_lib.paths import REPO_ROOT

# The shared helpers (unit_fixtures, experiment_smoke, browser, ...) live here, beside the three tiers' folders.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Figures render off-screen in tests, whatever the machine's display.
os.environ.setdefault("MPLBACKEND", "Agg")


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
