"""Extract every unit cache the book's notebooks need for a profile, as independent resumable jobs.

    python -m residual_lib.reproduce --profile paper [--models clip-l blip-l] [--datasets imagenet mnist]
                                     [--list] [--shard i/k] [--standin] [--device cuda] [--book-args]

A job is one `residual_lib.cache.extract` call (model, dataset, split, n, seed, storage dtype), planned from
the notebooks' parameter files (`notebooks/params/<profile>/`) with the same arguments each notebook passes,
so the notebooks later find every cache complete and only analyse. Jobs are independent and each is
resumable (the cache writes atomic shards and restarts at the first missing one), so several machines can
split them: give machine i of k ``--shard i/k`` (jobs are dealt round-robin in a fixed order), with the
same ``RESIDUAL_ARTIFACTS`` on a shared filesystem, or separate ones whose ``cache/`` folders are copied
together afterwards (every job writes its own folder). ``--list`` shows the plan and what is done.

``--standin`` swaps in the stand-in configuration (`STANDIN`): random-weight models of the paper's families
(open_clip ViT-S/32 with QuickGELU, a timm ViT with LayerScale) and generated images, small counts,
no network; ``--book-args`` prints the matching ``-p`` overrides for ``python -m residual_lib.book``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from .paths import REPO_ROOT, artifacts_dir

PARAMS_DIR = REPO_ROOT / "notebooks" / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

# The stand-in configuration: the paper profile's code paths on random weights and generated images.
STANDIN: dict[str, Any] = {
    "models": ["standin-clip"],
    "model_name": "standin-clip",
    "dataset": "standin-imagenet",
    "reference_dataset": "standin-imagenet",
    "datasets": ["standin-cifar10", "standin-mnist"],
    "probe_dataset": "standin-cifar10",
    "dictionary": "toy",
    "n": 64,
    "n_reference": 128,
    "n_train": None,
    "n_val": None,
    "n_test": None,
    "batch_size": 32,
    "max_epochs": 2,
    "patience": 1,
    "finetune": False,  # full finetuning of the backbone is exercised by the smoke profile on the toy model
    "n_random": 2,
}


@dataclass(frozen=True)
class Job:
    """One cache: `residual_lib.cache.extract(model, dataset, split=split, n=n, seed=seed, dtype=dtype)`."""

    model: str
    dataset: str
    split: str
    n: int | None
    seed: int
    dtype: str

    def sort_key(self) -> tuple:
        return self.model, self.dataset, self.split, self.n is None, self.n or 0, self.seed, self.dtype

    def __str__(self) -> str:
        return f"{self.model:<16} {self.dataset:<18} {self.split:<6} n={'all' if self.n is None else self.n:<6} " \
               f"seed={self.seed} {self.dtype}"


# ------------------------------------------------------------------------------------------------ planning


def declared_defaults(notebook: Path) -> dict[str, Any]:
    """The literal values of a notebook's parameters cell (py:percent source)."""
    lines = notebook.read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("# %%") and "parameters" in l), None)
    if start is None:
        return {}
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    values = {}
    for node in ast.parse("\n".join(lines[start + 1:end])).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = ast.literal_eval(node.value)
    return values


def notebook_parameters(name: str, profile: str, overrides: dict[str, Any] | None = None,
                        params_dir: Path = PARAMS_DIR, notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, Any]:
    """A notebook's parameters as the book runner merges them: cell < _defaults < own file < overrides."""
    cell = declared_defaults(notebooks_dir / f"{name}.py")
    folder = params_dir / profile

    def read(path: Path) -> dict:
        return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    merged = dict(cell)
    merged.update({k: v for k, v in read(folder / "_defaults.yaml").items() if k in cell})
    merged.update(read(folder / f"{name}.yaml"))
    merged.update({k: v for k, v in (overrides or {}).items() if k in cell})
    return merged


def _split_size(dataset: str, split: str) -> int:
    from .datasets import dataset_spec

    return int(dataset_spec(dataset).splits[split]["size"])


def _task_jobs(model: str, dataset: str, p: dict) -> list[Job]:
    """`residual_lib.alignment.load_task`: train, val (when the dataset declares one) and test."""
    from .datasets import dataset_spec

    splits = [("train", p["n_train"]), ("val", p["n_val"]), ("test", p["n_test"])]
    return [Job(model, dataset, s, n, p["seed"], p["cache_dtype"]) for s, n in splits if s in dataset_spec(dataset).splits]


def _fig02(p: dict) -> list[Job]:
    return [Job(m, p["dataset"], p["split"], p["n"], p["seed"], p["cache_dtype"]) for m in p["models"]]


def _fig03(p: dict) -> list[Job]:
    return [Job(p["model_name"], p["dataset"], p["split"], p["n"], p["seed"], p["cache_dtype"])]


def _fig04(p: dict) -> list[Job]:
    def n_for(dataset: str, wanted: int | None) -> int | None:
        # The notebook asks for the whole split (n=None) when the split is no larger than wanted.
        return None if wanted is None or _split_size(dataset, p["split"]) <= wanted else wanted
    jobs = []
    for m in p["models"]:
        jobs.append(Job(m, p["reference_dataset"], p["split"], n_for(p["reference_dataset"], p["n_reference"]),
                        p["seed"], p["cache_dtype"]))
        jobs += [Job(m, d, p["split"], n_for(d, p["n"]), p["seed"], p["cache_dtype"]) for d in p["datasets"]]
    return jobs


def _fig05(p: dict) -> list[Job]:
    jobs = []
    for m in p["models"]:
        jobs.append(Job(m, p["reference_dataset"], "train", p["n_reference"], p["seed"], p["cache_dtype"]))
        for d in p["datasets"]:
            jobs += _task_jobs(m, d, p)
    if p["models"] and p.get("probe_dataset"):
        jobs += _task_jobs(p["models"][0], p["probe_dataset"], p)
    return jobs


def _tab01(p: dict) -> list[Job]:
    return [j for m in p["models"] for d in p["datasets"] for j in _task_jobs(m, d, p)]


# Notebook -> the caches it extracts, mirroring its own `extract` / `load_task` calls.
NOTEBOOK_JOBS: dict[str, Callable[[dict], list[Job]]] = {
    "fig02_intrinsic_dimension": _fig02,
    "fig03_textspan_vs_omp": _fig03,
    "appA2_textspan_equals_somp": _fig03,  # same parameter keys: model, dataset, split, n
    "fig04_spectral_dataset_similarity": _fig04,
    "fig05_tab02_residual_alignment": _fig05,
    "tab01_coarse_unit_alignment": _tab01,
}


def plan(profile: str, overrides: dict[str, Any] | None = None, models: Iterable[str] | None = None,
         datasets: Iterable[str] | None = None, params_dir: Path = PARAMS_DIR,
         notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Job]:
    """Every distinct job the profile's notebooks need, sorted, optionally only some models / datasets."""
    jobs = set()
    for name, planner in NOTEBOOK_JOBS.items():
        if (notebooks_dir / f"{name}.py").is_file() and (params_dir / profile / f"{name}.yaml").is_file():
            jobs.update(planner(notebook_parameters(name, profile, overrides, params_dir, notebooks_dir)))
    keep_models, keep_datasets = set(models or []), set(datasets or [])
    return sorted((j for j in jobs if (not keep_models or j.model in keep_models)
                   and (not keep_datasets or j.dataset in keep_datasets)), key=Job.sort_key)


def parse_shard(text: str) -> tuple[int, int]:
    """'i/k' (1 <= i <= k) -> (i, k)."""
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r} is not of the form i/k, e.g. 1/4") from None
    if not 1 <= i <= k:
        raise ValueError(f"shard {text!r}: need 1 <= i <= k")
    return i, k


def shard(jobs: list[Job], i: int, k: int) -> list[Job]:
    """Machine i of k takes jobs i-1, i-1+k, i-1+2k, ... of the sorted plan (every job exactly once over i)."""
    return jobs[i - 1::k]


# ------------------------------------------------------------------------------------------------ running


def job_status(job: Job, root: Path | None = None) -> str:
    """'done' (a complete cache exists), 'partial' (shards of an interrupted run) or 'todo', from disk only."""
    import json

    base = Path(root) if root is not None else artifacts_dir() / "cache"
    leaf = f"{job.split}-n{'all' if job.n is None else job.n}-seed{job.seed}-paper-{job.dtype}"
    found = "todo"
    for manifest in base.glob(f"{job.model}-*/{job.dataset}/{leaf}/manifest.json"):
        if json.loads(manifest.read_text()).get("complete"):
            return "done"
        found = "partial"
    return found


def run_jobs(jobs: list[Job], device: str = "auto", batch_size: int = 64, load: Callable | None = None,
             extract: Callable | None = None) -> list[dict]:
    """Run jobs in order, loading each model once; returns one record per job (throughput, cache size)."""
    import time

    import torch

    from .cache import extract as cache_extract
    from .device import resolve_device
    from .models import load_model

    load, extract = load or load_model, extract or cache_extract
    dev = resolve_device(device)
    records, current, model = [], None, None
    for job in jobs:
        if job.model != current:
            model, current = None, job.model
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            model = load(job.model, device=str(dev))
        start = time.perf_counter()
        units = extract(model, job.dataset, split=job.split, n=job.n, seed=job.seed, device=str(dev),
                        batch_size=batch_size, dtype=job.dtype)
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(units.path).rglob("*") if f.is_file()) if hasattr(units, "path") else None
        records.append({**asdict(job), "images": units.n, "seconds": round(seconds, 2), "cache_bytes": size})
        print(f"done  {job}  {units.n} images in {seconds:.1f} s", file=sys.stderr, flush=True)
    return records


def _yaml_word(value: Any) -> str:
    """A YAML value as one shell word (no spaces): lists as [a,b], None as null."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_yaml_word(v) for v in value) + "]"
    return "null" if value is None else str(value)


def book_overrides(standin: bool, models: list[str] | None, datasets: list[str] | None) -> list[str]:
    """`key=value` overrides for `python -m residual_lib.book ... -p key=value` matching this run's selection."""
    values: dict[str, Any] = dict(STANDIN) if standin else {}
    if models:
        values["models"] = list(models)
        values["model_name"] = models[0]
    if datasets:
        values["datasets"] = list(datasets)
    return [f"{k}={_yaml_word(v)}" for k, v in values.items()]


def _names(values: list[str] | None) -> list[str] | None:
    """Accept both `--models a b` and `--models a,b` (the Makefile passes MODELS as one word)."""
    return None if not values else [n for v in values for n in v.split(",") if n]


def unknown_names(profile: str, standin: bool, models: list[str] | None, datasets: list[str] | None) -> str | None:
    """A message naming selected models / datasets that the profile's plan does not have, with the valid ones."""
    full = plan(profile, STANDIN if standin else None)
    for kind, given, valid in (("model", models, {j.model for j in full}), ("dataset", datasets, {j.dataset for j in full})):
        unknown = [n for n in given or [] if n not in valid]
        if unknown:
            return (f"unknown {kind}(s) {', '.join(unknown)} for profile {profile!r}{' (stand-in)' if standin else ''}; "
                    f"valid: {', '.join(sorted(valid)) or 'none'}")
    return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m residual_lib.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="paper", choices=("toy", "smoke", "paper"))
    parser.add_argument("--models", nargs="+", help="only these models (registered names)")
    parser.add_argument("--datasets", nargs="+", help="only these datasets (registered names)")
    parser.add_argument("--shard", default="1/1", help="i/k: this machine runs every k-th job starting at i")
    parser.add_argument("--list", action="store_true", help="print the plan with each job's status and stop")
    parser.add_argument("--standin", action="store_true", help="random-weight models and generated images")
    parser.add_argument("--book-args", action="store_true", help="print the matching book overrides and stop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    models, datasets = _names(args.models), _names(args.datasets)
    problem = unknown_names(args.profile, args.standin, models, datasets)
    if problem:
        parser.error(problem)
    if args.book_args:
        print(" ".join(f"-p {o}" for o in book_overrides(args.standin, models, datasets)))
        return 0
    jobs = plan(args.profile, STANDIN if args.standin else None, models, datasets)
    try:
        mine = shard(jobs, *parse_shard(args.shard))
    except ValueError as err:
        parser.error(str(err))
    if not jobs:
        print(f"no extraction jobs for profile {args.profile!r} with this selection", file=sys.stderr)
        return 1
    print(f"{len(mine)} of {len(jobs)} jobs (shard {args.shard}), profile {args.profile}"
          f"{' (stand-in)' if args.standin else ''}", file=sys.stderr)
    if args.list:
        for job in mine:
            print(f"{job_status(job):<8} {job}")
        return 0
    run_jobs(mine, device=args.device, batch_size=args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
