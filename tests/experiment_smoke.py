"""What the experiment modules' tests share: a page's smoke-profile parameters and the smoke model's artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from residual_lib.experiments import experiment
from residual_lib.paths import artifacts_dir
from residual_lib.reproduce import NOTEBOOKS_DIR, declared_defaults, notebook_parameters


def smoke_params(notebook: str):
    """The page's experiment `Params` as the book runner merges them for the smoke profile."""
    return experiment(notebook).Params.from_dict(notebook_parameters(notebook, "smoke"))


def cell_defaults(notebook: str) -> dict:
    """The literal values of the notebook's parameters cell."""
    return declared_defaults(NOTEBOOKS_DIR / f"{notebook}.py")


def planner_jobs_agree(notebook: str, profile: str, overrides: dict | None = None) -> bool:
    """Whether the experiment's `caches` under a profile's merged parameters are the planner's jobs, in order."""
    from residual_lib.reproduce import NOTEBOOK_JOBS

    values = notebook_parameters(notebook, profile, overrides)
    module = experiment(notebook)
    ours = [(k.model, k.dataset, k.split, k.n, k.seed, k.dtype) for k in module.caches(module.Params.from_dict(values))]
    return bool(ours) and ours == [(j.model, j.dataset, j.split, j.n, j.seed, j.dtype)
                                   for j in NOTEBOOK_JOBS[notebook](values)]


@pytest.fixture(scope="module")
def smoke_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway artifacts folder holding the smoke model: linked from the user's when trained, else trained here."""
    from residual_lib.toy.train import CONFIGS, ensure_model, is_current

    trained = artifacts_dir() / "toy" / "smoke"
    folder = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESIDUAL_ARTIFACTS", str(folder))
        mp.setenv("MPLBACKEND", os.environ.get("MPLBACKEND", "Agg"))
        if is_current(trained, CONFIGS["smoke"]):
            (folder / "toy").mkdir()
            (folder / "toy" / "smoke").symlink_to(trained)
        ensure_model("smoke", progress=False)  # trains in the throwaway folder unless linked
        yield folder
