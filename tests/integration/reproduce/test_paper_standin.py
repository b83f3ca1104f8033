"""The paper profile end to end on the stand-in configuration: `reproduce --standin`, then the book runner.

Random-weight open_clip ViT-S/32 (QuickGELU) and generated images stand in for the paper's models and
datasets (`residual_lib.reproduce.plan.STANDIN`), so every paper notebook runs its real code paths without a
download: the extraction jobs, each notebook on the extracted caches, the saved results, and the
reproduction report joining them with the paper's numbers. One extraction serves the module: the run-for-real
checks of the extraction (resumed, not redone; units sum to the embedding) read the caches the book then uses.
"""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from residual_lib.data.datasets import dataset_spec
from residual_lib.paper.reference import REFERENCES
from residual_lib.paths import REPO_ROOT
from residual_lib.report import results
from residual_lib.reproduce import plan as reproduce
from residual_lib.reproduce.plan import STANDIN, plan
from residual_lib.store import cache as cache_module
from residual_lib.store.cache import CacheKey, UnitCache
from residual_lib.store.jobs import ExtractJob

pytestmark = pytest.mark.slow

PAPER_NOTEBOOKS = ["fig02_intrinsic_dimension", "fig03_textspan_vs_omp", "fig04_spectral_dataset_similarity",
                   "tab01_coarse_unit_alignment", "fig05_tab02_residual_alignment", "appA2_textspan_equals_somp",
                   "reproduction_report"]
# Smaller counts than the stand-in defaults (the n=64 reference cache is one `reproduce --standin` extracts):
# the code paths are the same. One thread per page, as the toy book runs: two pages of the paper profile's own
# thread count (the libraries' default, two here) at once would crowd the two cores with waiting threads.
SHRINK = ["max_epochs=1", "n_random=1", "k=3", "n_reference=64", "threads=1"]


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True)


def _project_copy(root: Path) -> Path:
    """The repo's book and notebook sources in `root`, so the run never writes into the real `book/notebooks`."""
    skip = shutil.ignore_patterns("_build", "_generated", "*.ipynb")
    shutil.copytree(REPO_ROOT / "book", root / "book", ignore=skip)
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks", ignore=skip)
    return root


def _glued(notebook: Path, name: str):
    """The value a notebook glued under `name` (myst_nb.glue's display data)."""
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            if output.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                text = output["data"][output["metadata"]["scrapbook"]["mime_prefix"] + "text/plain"]
                return "".join(text)
    raise AssertionError(f"{notebook.name} glued no {name!r}")


@pytest.fixture(scope="module")
def standin_artifacts(tmp_path_factory) -> Path:
    """An artifacts folder holding the stand-in plan's caches, extracted by `reproduce --standin` (two workers, as
    on a 2-core machine). Extraction only: the book run trains with its own (shrunk) counts, so stored training
    would not match."""
    folder = tmp_path_factory.mktemp("standin-artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESIDUAL_ARTIFACTS", str(folder))
        mp.setenv("OMP_NUM_THREADS", "1")  # each worker one thread: two workers of two would crowd two cores
        assert reproduce.main(["--standin", "--no-training", "--device", "cpu", "--batch-size", "32",
                               "--workers", "2"]) == 0
    return folder


def test_standin_run_extracts_resumably_and_units_sum_to_the_embedding(standin_artifacts, monkeypatch):
    """The paper profile's plan with the stand-in overrides, run for real: open_clip (QuickGELU) and timm
    (LayerScale) stand-ins on generated images; a second run reuses every cache."""
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(standin_artifacts))
    torch.set_num_threads(1)
    dino = CacheKey("standin-dino", "standin-imagenet", "train", 64, 0, "float32")
    assert ExtractJob(dino, device="cpu", batch_size=32)()["images"] == 64  # what run_local's processes call
    jobs = [*plan("paper", STANDIN), dino]
    assert all(j.status() == "done" for j in jobs)
    manifests = {m: m.stat().st_mtime_ns for j in jobs for m in [j.folders()[0] / "manifest.json"]}
    assert len(manifests) == len(jobs)
    monkeypatch.setattr(cache_module, "_extract_locked", lambda *a, **k: pytest.fail("a finished cache was redone"))
    again = [ExtractJob(j, device="cpu", batch_size=32)() for j in jobs]
    assert [r["images"] for r in again] == [j.n or dataset_spec(j.dataset).splits[j.split]["size"] for j in jobs]
    assert {m: m.stat().st_mtime_ns for m in manifests} == manifests, "a finished cache's manifest was rewritten"

    for manifest in manifests:
        cache = UnitCache(manifest.parent)
        total = sum(cache.output_space(u).astype(np.float64) for u in cache.units)
        scale = np.abs(cache.embedding).max()
        assert np.abs(total - cache.embedding).max() / scale < 5e-3, manifest.parent  # float16 storage


def test_paper_profile_runs_end_to_end_on_the_standin(standin_artifacts, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(standin_artifacts))
    assert reproduce.main(["--standin", "--list", "--no-training"]) == 0
    listed = capsys.readouterr().out
    assert listed.strip() and all(line.startswith("done") for line in listed.splitlines()), listed

    assert reproduce.main(["--standin", "--book-args"]) == 0
    words = shlex.split(capsys.readouterr().out)
    # the atlas's network_* overrides stay out: the atlas is not among the pages run here, and the runner refuses
    # an override that no selected page declares
    given = [o for flag, o in zip(words[::2], words[1::2]) if flag == "-p" and not o.startswith("network_")]
    assert len(given) < len(words) // 2  # the stand-in does set the atlas's real-network section
    overrides = [w for o in [*given, *SHRINK] for w in ("-p", o)]
    root = _project_copy(tmp_path / "project")
    run = _python("-m", "residual_lib.book", "run", "--profile", "paper", "--root", str(root), "--quiet",
                  "--jobs", "2", "--only", *PAPER_NOTEBOOKS, *overrides)  # two pages at once on a 2-core machine
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]

    report_rows = pd.read_csv(root / "book" / "_generated" / "build_report.csv").set_index("notebook")
    for name in PAPER_NOTEBOOKS:
        assert (root / "book" / "notebooks" / f"{name}.ipynb").is_file(), name
        assert report_rows.loc[name, "status"] == "ok" and report_rows.loc[name, "profile"] == "paper", name
    for name in ["fig2", "fig3_agreement", "fig3_descriptions", "fig4_order", "table1", "table2", "table2_params"]:
        saved = results.load(name, run="paper")
        assert saved is not None and len(saved), f"the paper run saved no {name!r} results"
    # The stand-in's names and 12 layers share no keys with the paper's rows, so the join pairs none of them;
    # the report must still have read this run's results and counted the same pairs as `results.compare`.
    report = root / "book" / "notebooks" / "reproduction_report.ipynb"
    joined = sum(int((results.compare(n, results.load(n, run="paper"))["verdict"] != "not run").sum())
                 for n in REFERENCES)
    assert _glued(report, "results_run") == "'paper'"
    assert int(_glued(report, "n_ours")) == joined
    assert int(_glued(report, "n_paper")) == sum(len(results.compare(n, None)) for n in REFERENCES)
