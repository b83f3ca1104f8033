"""The paper profile's jobs, run by submitit: in local processes on one machine, or as a Slurm job array.

A job is a plain picklable callable (`ExtractJob`: one unit cache; `TrainJob`: one (model, task) of a Section 4
experiment, stored by `residual_lib.store.stored` for the page's `run` to read) that resumes where an earlier run
of it stopped (a cache restarts at its first missing shard) and does nothing when its output is complete, so
rerunning a plan never recomputes finished work. Extraction runs first, longest jobs first; training waits
for it (a second wave locally, a Slurm dependency on the cluster). What was submitted is recorded in
`<artifacts>/jobs/submitted.json`, so `status` can say, for every job, whether it is done, running, failed
(with the path of its log) or still to do.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .cache import CacheKey
from ..files import read_json, write_text
from ..paths import artifacts_dir

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class ExtractJob:
    """Extract one unit cache (`residual_lib.store.cache.extract`) on `device`; returns a record of the run."""

    key: CacheKey
    device: str = "auto"
    batch_size: int = 64
    shard_size: int = 1024

    @property
    def name(self) -> str:
        k = self.key
        return f"extract:{k.model}/{k.dataset}/{k.leaf}"

    def cost(self) -> int:
        """Images to run through the backbone: the order of the plan (longest first)."""
        from ..data.datasets import dataset_spec

        if self.key.n is not None:
            return self.key.n
        try:
            return int(dataset_spec(self.key.dataset).splits[self.key.split]["size"])
        except KeyError:
            return 0

    def done(self) -> bool:
        """Whether a complete cache of this key is on disk."""
        return self.key.status() == "done"

    def disk_state(self) -> str:
        """'done', 'partial' (an interrupted cache) or 'todo'."""
        return self.key.status()

    def __call__(self) -> dict[str, Any]:
        from .cache import extract
        from ..models.registry import load_model

        start = time.perf_counter()
        model = load_model(self.key.model, device=self.device)
        units = extract(model, self.key.dataset, device=self.device, batch_size=self.batch_size,
                        shard_size=self.shard_size, **self.key.extract_kwargs())
        return {**asdict(self.key), "images": units.n, "seconds": round(time.perf_counter() - start, 2)}


@dataclass(frozen=True)
class TrainJob:
    """Train one (model, task) of a Section 4 experiment (`train_task` of `residual_lib.experiments.<module>`)."""

    module: str
    params: tuple[tuple[str, Any], ...]  # the experiment's Params as sorted (name, value) pairs: hashable, picklable
    model: str
    dataset: str

    @classmethod
    def of(cls, module: str, params, model: str, dataset: str) -> "TrainJob":
        items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.to_dict().items()))
        return cls(module, items, model, dataset)

    @property
    def name(self) -> str:
        return f"train:{self.module}/{self.model}/{self.dataset}"

    def _experiment(self):
        import importlib

        module = importlib.import_module(f"residual_lib.experiments.{self.module}")
        return module, module.Params.from_dict(dict(self.params))

    def cost(self) -> int:
        """Training images of the task (None, the whole split, counts as the largest)."""
        n = dict(self.params).get("n_train")
        return 10**9 if n is None else int(n)

    def done(self) -> bool:
        from .stored import is_stored

        module, p = self._experiment()
        return all(is_stored(self.module, key) for key in module.train_keys(p, self.model, self.dataset))

    def disk_state(self) -> str:
        return "done" if self.done() else "todo"

    def __call__(self) -> dict[str, Any]:
        start = time.perf_counter()
        module, p = self._experiment()
        module.train_task(p, self.model, self.dataset)
        return {"job": self.name, "seconds": round(time.perf_counter() - start, 2)}


Job = ExtractJob | TrainJob


def _call(job: Job) -> dict[str, Any]:
    return job()


def longest_first(jobs: Iterable[Job]) -> list[Job]:
    """Jobs by decreasing cost, ties in plan order."""
    jobs = list(jobs)
    return sorted(jobs, key=lambda j: -j.cost())


def _run_in_order(jobs: list[Job], threads: int | None) -> list[dict[str, Any]]:
    from ..device import cpu_threads

    with cpu_threads(threads):
        return [job() for job in jobs]


@contextmanager
def beside(jobs: list[Job], threads: int | None = None) -> Iterator[None]:
    """Run the jobs, in order, in one local job process while the block runs; on leaving, wait for them.

    For a machine's second core: the block does other work (e.g. extracts another cache) meanwhile. The process
    is the local executor's (a fresh interpreter, its log under `jobs_folder()`) with `threads` CPU threads; a
    failed job raises here, after the block.
    """
    todo = [j for j in jobs if not j.done()]
    if not todo:
        yield
        return
    job = executor("local").submit(_run_in_order, todo, threads)
    try:
        yield
    except BaseException:
        job.cancel()
        raise
    job.result()


def jobs_folder() -> Path:
    """Where submitit writes each job's pickles and logs, and where submissions are recorded."""
    return artifacts_dir() / "jobs"


def _record_path() -> Path:
    return jobs_folder() / "submitted.json"


def _submitted() -> dict[str, dict]:
    path = _record_path()
    return read_json(path) if path.is_file() else {}


def _record(entries: dict[str, dict]) -> None:
    record = _submitted()
    record.update(entries)
    _record_path().parent.mkdir(parents=True, exist_ok=True)
    write_text(_record_path(), json.dumps(record, indent=1, sort_keys=True))


# AutoExecutor's own names; any other key is Slurm's and gets its `slurm_` prefix.
GENERIC_KEYS = ("timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node", "name",
                "stderr_to_stdout")


def slurm_parameters(text: str) -> dict[str, Any]:
    """'partition=gpu gpus_per_node=1 timeout_min=240' -> submitit AutoExecutor parameters (YAML values)."""
    import yaml

    params = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"slurm argument {word!r} is not key=value (e.g. partition=gpu timeout_min=240)")
        key = key.removeprefix("slurm_")
        params[key if key in GENERIC_KEYS else f"slurm_{key}"] = yaml.safe_load(value)
    return params


def executor(kind: str, slurm_args: dict[str, Any] | None = None):
    """A submitit executor writing into `jobs_folder()`: LocalExecutor, or SlurmExecutor with `slurm_args`."""
    import submitit

    folder = jobs_folder() / "%j"
    if kind == "local":
        import torch

        ex = submitit.LocalExecutor(folder=folder)
        # submitit's local defaults (2-minute limit, no GPU) suit tests, not extraction: every GPU, a week.
        ex.update_parameters(timeout_min=7 * 24 * 60, gpus_per_node=torch.cuda.device_count())
        return ex
    if kind == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(**(slurm_args or {}))
        return ex
    raise ValueError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTORS)}")


def run_local(jobs: list[Job], workers: int = 1, poll_s: float = 0.5) -> list[str]:
    """Run the jobs that are not done in local processes, `workers` at a time, longest first; wait for all.

    Returns the names of the jobs that failed (each with its log under `jobs_folder()`).
    """
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    todo = [j for j in longest_first(jobs) if not j.done()]
    ex = executor("local")
    running: dict[str, Any] = {}
    failed = []
    while todo or running:
        while todo and len(running) < workers:
            job = todo.pop(0)
            running[job.name] = ex.submit(job)
            _record({job.name: {"executor": "local", "job_id": running[job.name].job_id}})
            print(f"started  {job.name} (pid {running[job.name].job_id})", file=sys.stderr, flush=True)
        for name, sub in list(running.items()):
            if sub.done():
                del running[name]
                if sub.exception() is not None:
                    failed.append(name)
                    print(f"FAILED   {name}: log {sub.paths.stderr}", file=sys.stderr, flush=True)
                else:
                    print(f"done     {name}", file=sys.stderr, flush=True)
        time.sleep(poll_s)
    return failed


def run_plan_local(extraction: list[ExtractJob], training: list[TrainJob], workers: int = 1,
                   poll_s: float = 0.5) -> list[str]:
    """Extraction, then (if none failed) training, each wave `workers` processes at a time; the failed jobs."""
    return run_local(extraction, workers, poll_s) or run_local(training, workers, poll_s)


def submit_slurm(jobs: list[Job], slurm_args: dict[str, Any] | None = None,
                 after: list[str] | None = None) -> list[str]:
    """Submit the jobs that are not done as one Slurm job array (longest first), starting once the arrays of
    job ids `after` have succeeded; return the new array's job ids."""
    todo = [j for j in longest_first(jobs) if not j.done()]
    if not todo:
        return []
    ex = executor("slurm", slurm_args)
    if after:
        arrays = sorted({a.split("_")[0] for a in after})
        ex.update_parameters(slurm_additional_parameters={"dependency": "afterok:" + ":".join(arrays)})
    submitted = ex.map_array(_call, todo)
    _record({j.name: {"executor": "slurm", "job_id": s.job_id} for j, s in zip(todo, submitted)})
    return [s.job_id for s in submitted]


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def status(job: Job) -> tuple[str, str]:
    """(state, detail): 'done', 'running', 'failed' (detail: its log), 'partial' or 'todo' (from disk)."""
    import submitit

    on_disk = job.disk_state()
    if on_disk == "done":
        return "done", ""
    entry = _submitted().get(job.name)
    if entry is None:
        return on_disk, ""
    folder = jobs_folder() / str(entry["job_id"])
    if entry["executor"] == "slurm":
        sub = submitit.SlurmJob(folder=jobs_folder() / "%j", job_id=entry["job_id"])
        state = sub.state.upper()
        if state in ("RUNNING", "PENDING", "REQUEUED", "CONFIGURING", "COMPLETING"):
            return "running", state.lower()
        return ("failed", str(sub.paths.stderr)) if state not in ("UNKNOWN",) else (on_disk, "")
    log = folder / f"{entry['job_id']}_0_log.err"
    finished = (folder / f"{entry['job_id']}_0_result.pkl").is_file()
    if not finished and _pid_alive(entry["job_id"]):
        return "running", f"pid {entry['job_id']}"
    return "failed", str(log)
