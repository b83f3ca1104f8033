"""Extract every unit cache the book's notebooks need for a profile, as independent resumable jobs.

    python -m residual_lib.reproduce --profile paper [--models clip-l blip-l] [--datasets imagenet mnist]
                                     [--executor local|slurm] [--workers N] [--slurm-args '...']
                                     [--list] [--status] [--standin] [--device cuda] [--book-args]

A job is one unit cache (`residual_lib.store.cache.CacheKey`, run by `residual_lib.store.cache.extract`): the plan is
the union of `caches(params)` of every page's experiment (`residual_lib.experiments`), with each page's
parameters merged exactly as the book runner merges them, so the pages later find every cache complete
and only analyse. Jobs are independent, resumable (a cache restarts at its first missing shard) and run
longest first by `residual_lib.store.jobs` through submitit: ``--executor local`` (default) runs them in processes
on this machine, ``--workers`` at a time, and waits; ``--executor slurm`` submits one Slurm job array and
returns. Give every machine the same ``RESIDUAL_ARTIFACTS`` on shared storage. ``--list`` shows the plan
with what is on disk; ``--status`` adds what is running and what failed, with its log.

``--standin`` swaps in the stand-in configuration (`STANDIN`): random-weight models of the paper's families
(open_clip ViT-S/32 with QuickGELU, a timm ViT with LayerScale) and generated images, small counts,
no network; ``--book-args`` prints the matching ``-p`` overrides for ``python -m residual_lib.book``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable

from ..book.layout import PROFILES, positive_int
from ..store.cache import CacheKey
from ..paths import REPO_ROOT

# The stand-in configuration: the paper profile's code paths on random weights and generated images.
STANDIN: dict[str, Any] = {
    "models": ["standin-clip"],
    "model_name": "standin-clip",
    "dataset": "standin-imagenet",
    "reference_dataset": "standin-imagenet",
    "datasets": ["standin-cifar10", "standin-mnist"],
    "probe_dataset": "standin-cifar10",
    "network_models": ["standin-clip"],  # the atlas's real-network section on the real-model page's stand-in caches
    "network_reference_dataset": "standin-imagenet",
    "network_datasets": ["standin-cifar10", "standin-mnist"],
    "network_n": 64,
    "network_n_reference": 128,
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


def sort_key(key: CacheKey) -> tuple:
    """Plan order: by model (one model load per run of jobs), then dataset, split, n, seed, dtype."""
    return key.model, key.dataset, key.split, key.n is None, key.n or 0, key.seed, key.dtype


def describe(key: CacheKey) -> str:
    """One aligned line per job for `--list`."""
    return f"{key.model:<16} {key.dataset:<18} {key.split:<6} n={'all' if key.n is None else key.n:<6} " \
           f"seed={key.seed} {key.dtype}"


# ------------------------------------------------------------------------------------------------ planning


def plan(profile: str, overrides: dict[str, Any] | None = None, models: Iterable[str] | None = None,
         datasets: Iterable[str] | None = None, root: Path = REPO_ROOT) -> list[CacheKey]:
    """Every distinct cache the profile's pages read (their experiments' `caches`), sorted, optionally filtered.

    Parameters are merged exactly as the book runner merges them (`residual_lib.book.runner.notebook_parameters`).
    """
    from ..book.runner import Layout, notebook_parameters, toc_notebooks
    from ..experiments import experiment

    layout = Layout(Path(root))
    keys: set[CacheKey] = set()
    for name in toc_notebooks(layout):
        module = experiment(name)
        if module is None or not hasattr(module, "caches"):
            continue
        _, _, values = notebook_parameters(layout, name, profile, dict(overrides or {}))
        keys.update(module.caches(module.Params.from_dict(
            {k: v for k, v in values.items() if k in module.Params.names()})))
    keep_models, keep_datasets = set(models or []), set(datasets or [])
    return sorted((k for k in keys if (not keep_models or k.model in keep_models)
                   and (not keep_datasets or k.dataset in keep_datasets)), key=sort_key)


def plan_training(profile: str, overrides: dict[str, Any] | None = None, models: Iterable[str] | None = None,
                  datasets: Iterable[str] | None = None, root: Path = REPO_ROOT) -> list:
    """One `residual_lib.store.jobs.TrainJob` per (model, task) of every Section 4 page (`training_pairs`), filtered."""
    from ..book.runner import Layout, page_training, toc_notebooks

    layout = Layout(Path(root))
    keep_models, keep_datasets = set(models or []), set(datasets or [])
    return [job for name in toc_notebooks(layout) for job in page_training(layout, name, profile, overrides)
            if (not keep_models or job.model in keep_models) and (not keep_datasets or job.dataset in keep_datasets)]


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
    from ..store import jobs as engine

    parser = argparse.ArgumentParser(prog="python -m residual_lib.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="paper", choices=PROFILES)
    parser.add_argument("--models", nargs="+", help="only these models (registered names)")
    parser.add_argument("--datasets", nargs="+", help="only these datasets (registered names)")
    parser.add_argument("--executor", default="local", choices=engine.EXECUTORS,
                        help="local: processes on this machine, waiting for them; slurm: submit a job array, return")
    parser.add_argument("--workers", type=positive_int, default=1, help="local executor: jobs running at once")
    parser.add_argument("--slurm-args", default="", metavar="'KEY=VALUE ...'",
                        help="submitit parameters, e.g. 'partition=gpu gpus_per_node=1 timeout_min=240'")
    parser.add_argument("--list", action="store_true", help="print the plan with each job's status and stop")
    parser.add_argument("--status", action="store_true",
                        help="every job: done, running, failed (with its log) or todo, and stop")
    parser.add_argument("--standin", action="store_true", help="random-weight models and generated images")
    parser.add_argument("--book-args", action="store_true", help="print the matching book overrides and stop")
    parser.add_argument("--no-training", action="store_true",
                        help="extraction only (the pages then train their Section 4 methods themselves)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    args = parser.parse_args(argv)
    models, datasets = _names(args.models), _names(args.datasets)
    problem = unknown_names(args.profile, args.standin, models, datasets)
    if problem:
        parser.error(problem)
    if args.book_args:
        print(" ".join(f"-p {o}" for o in book_overrides(args.standin, models, datasets)))
        return 0
    keys = plan(args.profile, STANDIN if args.standin else None, models, datasets)
    if not keys:
        print(f"no extraction jobs for profile {args.profile!r} with this selection", file=sys.stderr)
        return 1
    overrides = STANDIN if args.standin else None
    extraction = engine.longest_first(engine.ExtractJob(k, args.device, args.batch_size) for k in keys)
    training = [] if args.no_training else engine.longest_first(
        plan_training(args.profile, overrides, models, datasets))
    print(f"{len(extraction)} extraction and {len(training)} training jobs, profile {args.profile}"
          f"{' (stand-in)' if args.standin else ''}", file=sys.stderr)
    if args.list or args.status:
        for job in extraction + training:
            state, detail = engine.status(job) if args.status else (job.disk_state(), "")
            label = describe(job.key) if isinstance(job, engine.ExtractJob) else job.name
            print(f"{state:<8} {label}" + (f"  {detail}" if detail else ""))
        return 0
    if args.executor == "slurm":
        try:
            slurm = engine.slurm_parameters(args.slurm_args)
        except ValueError as err:
            parser.error(str(err))
        first = engine.submit_slurm(extraction, slurm)
        second = engine.submit_slurm(training, slurm, after=first)
        print(f"submitted {len(first)} extraction and {len(second)} training jobs (training waits for extraction); "
              f"follow them with --status", file=sys.stderr)
        return 0
    failed = engine.run_plan_local(extraction, training, workers=args.workers)
    if failed:
        print(f"{len(failed)} job(s) failed: {', '.join(failed)}; rerun to resume them", file=sys.stderr)
        return 1
    return 0

