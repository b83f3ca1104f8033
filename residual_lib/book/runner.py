"""Execute the book's notebooks with papermill and build the Jupyter Book site.

    python -m residual_lib.book run   --profile smoke [--only NAME ...] [-p key=value ...]
    python -m residual_lib.book build --profile toy   [--only NAME ...] [-p key=value ...] [--jobs N]

`book/_toc.yml` is the single list of pages: every entry under `notebooks/` is a notebook whose
Jupytext source is `notebooks/<name>.py` and whose executed copy is `book/notebooks/<name>.ipynb`.
Parameters come from `notebooks/params/<profile>/_defaults.yaml` (keys a notebook does not declare
are skipped) overlaid by `notebooks/params/<profile>/<name>.yaml` (keys must be declared), overlaid
by `-p` overrides. Notebooks run with the `residual` kernel and the repository root as working
directory. A failing cell stops that notebook; the others still run, then the command exits 1 and
names every failing notebook and cell. With `--jobs N`, N notebooks run at once, each in its own process
(`run_parallel`).
"""

import argparse
import contextlib
import csv
import datetime
import os
import re
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from residual_lib.book import provenance
from residual_lib.book.layout import (PROFILES, BookError, Layout, literal_parameters, load_notebook, page_parameters,
                                       parameters_cell, parse_overrides, positive_int, select, toc_notebooks)
from residual_lib.files import atomic_file, write_text
from residual_lib.paths import REPO_ROOT

KERNEL = "residual"
PROVENANCE_TAG = "residual-provenance"
INJECTED_TAG = "injected-parameters"
# tqdm reads TQDM_* variables as defaults: sparse redraws keep papermill's stream logs a few lines long.
TQDM_ENV = {"TQDM_MININTERVAL": "5", "TQDM_NCOLS": "100"}
TQDM_QUIET = "ignore:IProgress not found:Warning"
REPORT_FIELDS = ("notebook", "profile", "status", "runtime (s)", "peak memory (MiB)", "commit", "finished (UTC)")
# Last row of the build report: summed runtime, largest peak memory.
TOTAL_ROW = "all notebooks (sum; max)"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")
# Sphinx/myst-nb log lines that mean a page is wrong even when jupyter-book exits 0.
LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|SEVERE|CRITICAL):|Traceback \(most recent call last\)|"
                         r"[Ee]xecution [Ff]ailed|CellExecutionError")


@dataclass
class RunRecord:
    """Outcome of one notebook run: what the build report shows."""

    notebook: str
    profile: str
    status: str
    runtime_s: float
    peak_rss_mib: float | None
    commit: str
    finished_utc: str
    error: str = ""

    def row(self) -> dict[str, str]:
        peak = "" if self.peak_rss_mib is None else f"{self.peak_rss_mib:.0f}"
        return dict(zip(REPORT_FIELDS, (self.notebook, self.profile, self.status, f"{self.runtime_s:.1f}", peak,
                                        self.commit, self.finished_utc)))


def notebook_parameters(layout: Layout, name: str, profile: str, overrides: dict[str, Any]):
    """(source notebook, declared names, merged parameters), checked by the page's experiment `Params`.

    The one parameter merge: the book runner and the planner (`residual_lib.reproduce`) both call it.
    A value the experiment cannot use is a `BookError` here, before any kernel starts.
    """
    from residual_lib.experiments import ParamsError, experiment

    nb, declared, params = page_parameters(layout, name, profile, overrides)
    module = experiment(name)
    if module is not None:
        missing = sorted(set(module.Params.names()) - set(declared))
        if missing:
            raise BookError(f"notebook {name!r} does not declare {', '.join(missing)} in its parameters cell, "
                            f"which its experiment's Params has")
        try:
            module.Params.from_dict({k: v for k, v in params.items() if k in module.Params.names()})
        except ParamsError as exc:
            raise BookError(f"notebook {name!r}, profile {profile!r}: {exc}") from None
    return nb, declared, params


def add_provenance_cell(nb, name: str, profile: str, declared: list[str]) -> None:
    """Insert the hidden provenance cell right after the parameters cell (papermill's injected cell lands between)."""
    import nbformat

    code = ("from residual_lib.book import provenance\n"
            f"provenance.show(profile={profile!r}, notebook={name!r},\n"
            f"                parameters={{k: globals()[k] for k in {declared!r}}})")
    cell = nbformat.v4.new_code_cell(code, metadata={"tags": [PROVENANCE_TAG, "remove-input"]})
    nb.cells.insert(parameters_cell(nb, name) + 1, cell)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python (residual_lib)", "language": "python"}


class KernelMemory:
    """Peak resident memory of the notebook's kernel, read from the kernel's high-water mark after each cell."""

    def __init__(self) -> None:
        self.peak_bytes: int | None = None

    def sample(self, **_: Any) -> None:
        """nbclient hook: read VmHWM (Linux) or current RSS of every ipykernel child of this process."""
        import psutil  # installed with ipykernel

        for proc in psutil.Process().children(recursive=True):
            try:
                if not any("ipykernel" in part for part in proc.cmdline()):
                    continue
                peak = _vm_hwm(proc.pid) or proc.memory_info().rss
            except (psutil.Error, OSError):
                continue
            self.peak_bytes = max(self.peak_bytes or 0, peak)


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _source_cell_number(nb, index: int) -> int:
    """1-based position of executed cell `index` among the cells of the Jupytext source."""
    inserted = {PROVENANCE_TAG, INJECTED_TAG}
    return sum(1 for cell in nb.cells[:index + 1] if not inserted & set(cell.metadata.get("tags", [])))


def _excerpt(source: str, line: int | None, context: int = 3) -> str:
    """The cell's lines around `line` (1-based, marked '-->'), or its first lines when unknown."""
    lines = source.rstrip().splitlines()
    lo, hi = (0, min(len(lines), 8)) if line is None else (max(0, line - 1 - context), min(len(lines), line + 1))
    shown = [("--> " if i + 1 == line else "    ") + f"{i + 1:3d} | {lines[i]}" for i in range(lo, hi)]
    return "\n".join(shown + (["          ..."] if hi < len(lines) else []))


def describe_failure(name: str, source: Path, nb, error) -> str:
    """'notebook X failed in cell N' with the failing lines of the cell, the exception and its last frames."""
    trace = [ANSI.sub("", t) for t in error.traceback]
    lines = [int(m.group(1)) for t in trace for m in [CELL_LINE.search(t)] if m]
    frames = "\n".join(trace[-3:-1]).replace("\n", "\n      ")
    return (f"notebook {name!r} ({source}) failed in cell {_source_cell_number(nb, error.cell_index)} "
            f"(In [{error.exec_count}]):\n{_excerpt(error.source, lines[0] if lines else None)}\n"
            f"  {error.ename}: {ANSI.sub('', error.evalue)}" + (f"\n  traceback (last frames):\n      {frames}"
                                                                if frames else ""))


def describe_interruption(name: str, source: Path, out: Path, error: Exception, peak_rss_mib: float | None) -> str:
    """Name the cell that was running when the kernel died (or the run stopped), and mark it in the executed copy.

    Papermill leaves such a page looking complete (no error output, every cell 'completed'); the error output
    written into the running cell makes every later build refuse the page until it is rerun.
    """
    import nbformat

    what = ("the kernel died while this cell ran (killed by a signal or out of memory)"
            + (f"; its peak memory so far: {peak_rss_mib:.0f} MiB" if peak_rss_mib else "")
            if type(error).__name__ == "DeadKernelError" else "the run stopped while this cell ran")
    head = f"notebook {name!r} ({source}) could not run"
    if not out.is_file():
        return f"{head}: {type(error).__name__}: {error}"
    nb = nbformat.read(out, as_version=4)
    started = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
               and c.metadata.get("papermill", {}).get("start_time") is not None]
    if not started:
        return f"{head}: {type(error).__name__}: {error}"
    cell = nb.cells[started[-1]]
    cell.outputs.append(nbformat.v4.new_output("error", ename=type(error).__name__, evalue=what, traceback=[]))
    cell.metadata.setdefault("papermill", {})["status"] = "failed"
    nb.metadata.setdefault("papermill", {})["exception"] = True
    nbformat.write(nb, out)
    return (f"notebook {name!r} ({source}) failed in cell {_source_cell_number(nb, started[-1])}: {what}; "
            f"the cells after it did not run:\n{_excerpt(cell.source, None)}\n  {type(error).__name__}: {error}")


def collapse_parameters(nb) -> None:
    """Collapse papermill's injected-parameters cell like the page's own parameters cell: the provenance block
    already lists every value, so the page leads with its figures."""
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if INJECTED_TAG in tags and "hide-input" not in tags:
            tags.append("hide-input")


def finalise_provenance(nb, runtime_s: float, peak_rss_mib: float | None) -> None:
    """Write the measured runtime and peak memory into the provenance output of an executed notebook."""
    for cell in nb.cells:
        if PROVENANCE_TAG not in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            rec = output.get("metadata", {}).get(provenance.METADATA_KEY)
            if rec is None:
                continue
            rec = dict(rec, runtime_s=round(runtime_s, 1), peak_rss_mib=peak_rss_mib)
            data, metadata = provenance.bundle(rec)
            output["data"] = data
            output["metadata"] = metadata


@contextlib.contextmanager
def kernel_environment(profile: str, notebook: str) -> Iterator[None]:
    """Environment the kernel inherits: the profile, the notebook's name, sparse tqdm redraws (unless set), inline
    figures."""
    saved = dict(os.environ)
    # residual_lib.report.results files each notebook's numbers under the run's profile; the claim ledger links
    # the verdicts a notebook files to that notebook.
    os.environ["RESIDUAL_PROFILE"] = profile
    os.environ["RESIDUAL_NOTEBOOK"] = notebook
    for key, value in TQDM_ENV.items():
        os.environ.setdefault(key, value)
    # A headless MPLBACKEND (Agg, as test runners set) would leave figures out of the executed notebook.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # Without ipywidgets tqdm.auto falls back to text bars (what we want) but warns on every page.
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), TQDM_QUIET]))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_notebook(layout: Layout, name: str, profile: str, overrides: dict[str, Any],
                 log_output: bool = True) -> RunRecord:
    """Execute one notebook with papermill into `book/notebooks/<name>.ipynb` and measure it."""
    import nbformat
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from papermill.exceptions import PapermillExecutionError

    nb, declared, params = notebook_parameters(layout, name, profile, overrides)
    add_provenance_cell(nb, name, profile, declared)
    out = layout.executed(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a stale page from an earlier run must not pass for this run's
    memory = KernelMemory()
    start = time.perf_counter()
    error, interrupted = "", None
    try:
        with kernel_environment(profile, name):
            papermill.execute_notebook(
                nb, str(out), parameters=params, kernel_name=KERNEL, cwd=str(layout.root), progress_bar=False,
                stdout_file=sys.stdout if log_output else None, stderr_file=sys.stderr if log_output else None,
                coalesce_streams=True, on_cell_executed=memory.sample, on_cell_error=memory.sample)
    except PapermillExecutionError as exc:
        error = describe_failure(name, layout.source(name), nbformat.read(out, as_version=4), exc)
    except NoSuchKernel as exc:
        raise BookError(f"Jupyter kernel {KERNEL!r} is not installed ({exc}); `make setup` installs it") from exc
    except Exception as exc:  # a dead kernel or a timeout is this notebook's failure, reported with the others
        interrupted = exc
    runtime = time.perf_counter() - start
    peak = None if memory.peak_bytes is None else memory.peak_bytes / 2**20
    if interrupted is not None:
        error = describe_interruption(name, layout.source(name), out, interrupted, peak)
    if out.is_file():
        executed = nbformat.read(out, as_version=4)
        finalise_provenance(executed, runtime, peak)
        collapse_parameters(executed)
        nbformat.write(executed, out)
    finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    commit = provenance.describe_commit(provenance.git_commit(), provenance.changed_files())
    return RunRecord(name, profile, "failed" if error else "ok", runtime, peak, commit,
                     finished, error)


def write_report(path: Path, records: list[RunRecord], order: list[str]) -> None:
    """Merge `records` into the build-report CSV (rows of notebooks not rerun are kept), in toc order."""
    rows: dict[str, dict[str, str]] = {}
    if path.is_file():
        with path.open(newline="") as f:
            rows = {r["notebook"]: r for r in csv.DictReader(f) if r.get("notebook") in order}
    rows.update({r.notebook: r.row() for r in records})
    table = [rows[n] for n in order if n in rows]
    runtime, peak = REPORT_FIELDS[3], REPORT_FIELDS[4]
    total = {REPORT_FIELDS[0]: TOTAL_ROW, REPORT_FIELDS[1]: ", ".join(sorted({r[REPORT_FIELDS[1]] for r in table})),
             REPORT_FIELDS[2]: "ok" if all(r[REPORT_FIELDS[2]] == "ok" for r in table) else "failed",
             runtime: f"{sum(float(r[runtime]) for r in table):.1f}",
             peak: max((r[peak] for r in table if r[peak]), key=float, default=""),
             # the total spans the rows' commits and finishing times: it names them rather than leave cells blank
             REPORT_FIELDS[5]: ", ".join(sorted({r[REPORT_FIELDS[5]] for r in table})),
             REPORT_FIELDS[6]: max((r[REPORT_FIELDS[6]] for r in table), default="")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(table + [total])


def pages_before(name: str) -> tuple[str, ...]:
    """The pages whose caches page `name` reads (its experiment's `AFTER`): with --jobs it starts after them rather
    than hold a worker waiting on their cache locks."""
    from residual_lib.experiments import experiment

    return tuple(getattr(experiment(name), "AFTER", ()))


def summary_pages(names: list[str]) -> list[str]:
    """The summary pages among `names` (an experiment with `SUMMARY`: the front page, the reproduction report),
    which read what the other pages leave behind."""
    from residual_lib.experiments import experiment

    return [n for n in names if getattr(experiment(n), "SUMMARY", False)]


def execution_order(names: list[str]) -> list[str]:
    """Toc order, except that the summary pages run after the others."""
    summary = summary_pages(names)
    return [n for n in names if n not in summary] + summary


def run(layout: Layout, profile: str, only: list[str] | None = None, overrides: dict[str, Any] | None = None,
        log_output: bool = True, jobs: int = 1) -> list[RunRecord]:
    """Execute the selected toc notebooks (`execution_order`); raise BookError naming every failure.

    With `jobs` > 1, that many notebooks run at once, each in its own process (`run_parallel`).
    """
    from tqdm.auto import tqdm

    if jobs < 1:
        raise BookError(f"jobs must be at least 1, got {jobs}")
    names = toc_notebooks(layout)
    chosen = select(names, only)
    overrides = overrides or {}
    if overrides:
        declared = {n: load_notebook(layout, n)[1] for n in chosen}
        unused = [k for k in overrides if not any(k in d for d in declared.values())]
        if unused:
            raise BookError(f"override(s) {', '.join(unused)} match no parameter of {', '.join(chosen)}; "
                            + "; ".join(f"{n}: {', '.join(d) or 'none'}" for n, d in declared.items()))
    for name in chosen:  # every page's parameters are checked before the first kernel starts
        notebook_parameters(layout, name, profile, overrides)
    chosen = execution_order(chosen)
    if not only:  # a full run files every page's claim tables afresh (residual_lib.claims)
        from residual_lib.claims import clear_records

        clear_records(profile)
    toy, readers = toy_training(layout, chosen, profile, overrides)
    if jobs > 1:
        early = early_training(layout, readers, profile, overrides) if toy else []
        records = run_parallel(layout, chosen, profile, overrides, jobs, toy, readers, early)
    else:
        if toy is not None:
            print(f"== toy model ({toy}): training", file=sys.stderr, flush=True)
            print(f"== toy model: {_train_toy(toy)}", file=sys.stderr, flush=True)
        records = []
        for name in tqdm(chosen, desc=f"notebooks ({profile})", unit="nb", mininterval=0):
            print(f"== {name} ({profile})", file=sys.stderr, flush=True)
            records.append(run_notebook(layout, name, profile, overrides, log_output))
            print(f"== {name}: {records[-1].status} in {records[-1].runtime_s:.1f} s", file=sys.stderr, flush=True)
    write_report(layout.report, records, names)
    failures = [r.error for r in records if r.error]
    if failures:
        raise BookError(f"{len(failures)} of {len(records)} notebook(s) failed:\n\n" + "\n\n".join(failures))
    return records


def _run_logged(layout: Layout, name: str, profile: str, overrides: dict[str, Any]) -> RunRecord:
    """`run_notebook` in a worker process, the notebook's own output written to its log file."""
    log = layout.run_log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()  # what the worker wrote before stays on the console, not in this page's log
    sys.stderr.flush()
    with log.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        # The kernel inherits this worker's file descriptors: what it writes to them (its own warnings) goes here too.
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        return run_notebook(layout, name, profile, overrides, log_output=True)


def longest_first(layout: Layout, names: list[str]) -> list[str]:
    """`names` ordered by the runtime the last build report gives them, longest first (unknown ones first, in
    their order): started first, the long pages do not leave one worker running alone at the end."""
    known: dict[str, float] = {}
    if layout.report.is_file():
        with layout.report.open(newline="") as f:
            known = {r[REPORT_FIELDS[0]]: float(r[REPORT_FIELDS[3]]) for r in csv.DictReader(f)
                     if r[REPORT_FIELDS[0]] in names}
    return sorted(names, key=lambda n: -known.get(n, float("inf")))


def toy_training(layout: Layout, names: list[str], profile: str,
                 overrides: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(the toy profile to train first, the pages of `names` that read its model): (None, []) when the checkpoint is
    current or no page reads it."""
    from residual_lib.toy import ARCHS

    readers = [n for n in names if reads_toy_model(layout, n, profile, overrides, set(ARCHS.values()))]
    if not readers:  # before the training module: it loads torch and open_clip
        return None, []
    from residual_lib.toy.train import CONFIGS, is_current, output_dir, training_profile

    toy = training_profile(profile)
    return (None, []) if is_current(output_dir(toy), CONFIGS[toy]) else (toy, readers)


def reads_toy_model(layout: Layout, name: str, profile: str, overrides: dict[str, Any], archs: set[str]) -> bool:
    """Whether a page's parameters (its cell's defaults under the profile's values) name a toy model: a page that
    names none runs while the toy model trains."""
    def names_one(value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return any(names_one(v) for v in value)
        return isinstance(value, str) and value in archs

    nb, _, params = notebook_parameters(layout, name, profile, overrides)
    values = {**literal_parameters(nb.cells[parameters_cell(nb, name)].source), **params}
    return any(names_one(v) for v in values.values())


def _train_toy(toy: str) -> str:
    """Train the toy model of profile `toy` (a no-op when current); a line saying where it is and what it took."""
    from residual_lib.files import read_json
    from residual_lib.toy.train import ensure_model

    path = ensure_model(toy)
    return f"{path} trained in {read_json(path.parent / 'manifest.json')['train_seconds']} s"


def _train_logged(layout: Layout, toy: str) -> str:
    """`_train_toy` in a worker process, its progress written to the toy model's log."""
    with _logging_to(layout, TOY_MODEL_LOG):
        return _train_toy(toy)


@contextlib.contextmanager
def _logging_to(layout: Layout, name: str) -> Iterator[None]:
    """This process's Python-level stdout and stderr go to `book/_generated/logs/<name>.log` for the block."""
    log = layout.run_log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


TOY_MODEL_LOG = "toy-model"


def early_training(layout: Layout, names: list[str], profile: str, overrides: dict[str, Any]) -> list:
    """The Section 4 training that pages waiting for the toy model do on other models (their `training_pairs` of
    real networks), as `residual_lib.store.jobs.TrainJob`s not yet stored. A worker that the toy training leaves
    free runs them; the pages then read them back (`residual_lib.store.stored`) instead of training them after it."""
    from residual_lib.toy import ARCHS

    return [job for name in names for job in page_training(layout, name, profile, overrides)
            if job.model not in ARCHS.values() and not job.done()]


def page_training(layout: Layout, name: str, profile: str, overrides: dict[str, Any] | None = None) -> list:
    """One `residual_lib.store.jobs.TrainJob` per (model, task) page `name` trains (`training_pairs`); [] for a page
    that trains nothing. The paper profile's planner (`residual_lib.reproduce.plan`) and `early_training` read it."""
    from residual_lib.experiments import PAGES, experiment
    from residual_lib.store.jobs import TrainJob

    module = experiment(name)
    if module is None or not hasattr(module, "training_pairs"):
        return []
    _, _, values = notebook_parameters(layout, name, profile, dict(overrides or {}))
    p = module.Params.from_dict({k: v for k, v in values.items() if k in module.Params.names()})
    return [TrainJob.of(PAGES[name], p, m, d) for m, d in module.training_pairs(p)]


def _early_logged(layout: Layout, job) -> str:
    """One `early_training` job in a worker process, under its page's `threads`, its output written to its log."""
    from residual_lib.device import cpu_threads

    with _logging_to(layout, early_log(job)), cpu_threads(dict(job.params).get("threads")):
        return f"{job()['seconds']} s"


def early_log(job) -> str:
    """The log name of an `early_training` job: 'early-<page's experiment>-<model>-<task>'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"early-{job.module}-{job.model}-{job.dataset}")


def run_parallel(layout: Layout, names: list[str], profile: str, overrides: dict[str, Any],
                 jobs: int, toy: str | None = None, readers: list[str] | None = None,
                 early: list | None = None) -> list[RunRecord]:
    """Run `names` (in `execution_order`) `jobs` at a time in worker processes; summary pages wait for the rest.

    With `toy` (a toy profile to train first), the training takes one worker and the pages not among `readers` (those
    that read its model, `toy_training`) run beside it (the real-model page's extractions), after the `early` jobs
    (`early_training`); the others start once it is done. Each notebook's output goes
    to `book/_generated/logs/<name>.log` (two pages' streams interleaved would be unreadable); this process prints
    one line per finished page. Pages that share a cache wait on its lock.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    summary = summary_pages(names)
    pages = longest_first(layout, [n for n in names if n not in summary])
    waiting = [n for n in pages if n in (readers or [])] if toy else []
    queue = [n for n in pages if n not in waiting]
    early = list(early or [])
    after = {n: [a for a in pages_before(n) if a in names] for n in pages}
    records: dict[str, RunRecord] = {}
    bar = tqdm(total=len(names), desc=f"notebooks ({profile}, {jobs} at once)", unit="nb", mininterval=0)
    started = time.time()
    # spawn: a worker must not inherit this process's imported state (torch's thread pools, open kernels).
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        running = {pool.submit(_train_logged, layout, toy): TOY_MODEL_LOG} if toy else {}
        if toy:
            print(f"== toy model ({toy}): training beside {len(queue)} page(s) that read no toy model "
                  f"(log: {layout.run_log(TOY_MODEL_LOG).relative_to(layout.root)})", file=sys.stderr, flush=True)
        while queue or waiting or running or summary:
            if not (queue or waiting or running):  # the summary pages read what every other page left behind
                queue, summary = summary, []
            broken = any(LOST in r.error for r in records.values())
            for name in (queue if broken else []):  # a broken pool takes no more pages
                records[name] = lost_page(layout, name, profile, started, None)
                bar.update()
            queue = [] if broken else queue
            # While the toy model trains, a free worker takes the early jobs first: each shortens a page that waits
            # for the training, whereas a free page can also run after it, beside those pages.
            while len(running) < jobs and early and TOY_MODEL_LOG in running.values():
                job = early.pop(0)
                running[pool.submit(_early_logged, layout, job)] = job
            while len(running) < jobs and queue:
                ready = [n for n in queue if all(a in records for a in after.get(n, []))]
                if not ready and running:
                    break
                name = (ready or queue)[0]  # nothing running and nothing ready: a cycle of AFTERs runs in order
                queue.remove(name)
                running[pool.submit(_run_logged, layout, name, profile, overrides)] = name
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                if not isinstance(name, str):  # an early job: its page trains what it could not, so only say so
                    print(f"== {name.name} (early, for a page waiting on the toy model): {finished(future)} "
                          f"(log: {layout.run_log(early_log(name)).relative_to(layout.root)})",
                          file=sys.stderr, flush=True)
                    continue
                if name == TOY_MODEL_LOG:
                    queue += trained(future, waiting, records, layout, profile, started, bar)
                    waiting = []
                    continue
                try:
                    records[name] = future.result()
                except BrokenProcessPool as died:  # every page still running or queued ends here
                    records[name] = lost_page(layout, name, profile, started, died)
                bar.update()
                print(f"== {name}: {records[name].status} in {records[name].runtime_s:.1f} s "
                      f"(log: {layout.run_log(name).relative_to(layout.root)})", file=sys.stderr, flush=True)
    bar.close()
    return [records[n] for n in names]


def finished(future) -> str:
    """'done in <seconds>' of a finished early job, or the error that stopped it."""
    try:
        return f"done in {future.result()}"
    except Exception as exc:  # noqa: BLE001 (the page that needs this training runs it again and reports)
        return f"failed ({exc!r}); its page trains it"


def trained(future, waiting: list[str], records: dict[str, RunRecord], layout: Layout, profile: str,
            started: float, bar) -> list[str]:
    """The pages that waited for the toy model, to run now; when its training failed, they fail with its error."""
    log = layout.run_log(TOY_MODEL_LOG).relative_to(layout.root)
    try:
        print(f"== toy model: {future.result()} (log: {log})", file=sys.stderr, flush=True)
        return waiting
    except Exception as exc:  # a failed training fails the pages that read the model, not the others
        for name in waiting:
            records[name] = (lost_page(layout, name, profile, started, None) if isinstance(exc, BrokenProcessPool) else
                             RunRecord(name, profile, "failed", 0.0, None, provenance.git_commit(),
                                       datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                                       f"notebook {name!r} never ran: training the toy model failed ({exc!r}; log: "
                                       f"{log})"))
            bar.update()
        return []


LOST = ("a worker process of the parallel build died (killed by a signal or out of memory; the pool then stops "
        "them all)")


def lost_page(layout: Layout, name: str, profile: str, started: float, died: BrokenProcessPool | None) -> RunRecord:
    """The failed record of a page a dead worker process took down: the page it was running (its log was opened
    after `started`), named with the cell that was running, or a page that never started."""
    log = layout.run_log(name)
    ran = died is not None and log.is_file() and log.stat().st_mtime >= started
    rerun = f"rerun it with `python -m residual_lib.book run --only {name}`"
    if ran:
        cell = describe_interruption(name, layout.source(name), layout.executed(name), died, None)
        error = f"notebook {name!r} was running when {LOST}; {rerun}\n  {cell}"
    else:
        error = f"notebook {name!r} never ran: {LOST} before it started; {rerun}"
    finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return RunRecord(name, profile, "failed", time.time() - started if ran else 0.0, None, provenance.git_commit(),
                     finished, error)


def executed_errors(layout: Layout, names: list[str]) -> list[str]:
    """Error outputs left in executed notebooks (a stale or hand-made page the runner did not check)."""
    import nbformat

    problems = []
    for name in names:
        path = layout.executed(name)
        if not path.is_file():
            problems.append(f"notebook {name!r} was not executed: {path} is missing")
            continue
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    problems.append(f"notebook {name!r} cell {_source_cell_number(nb, i)} shows an error: "
                                    f"{output.get('ename')}: {ANSI.sub('', output.get('evalue', ''))}")
        problems += half_run(nb, name, path)
    return problems


def half_run(nb, name: str, path: Path) -> list[str]:
    """A problem line when papermill executed `nb` but some code cell never started (an interrupted run)."""
    if "papermill" not in nb.metadata:
        return []  # not executed by papermill: nothing to tell
    never = [_source_cell_number(nb, i) for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and c.metadata.get("papermill", {}).get("start_time") is None]
    if not never and nb.metadata.papermill.get("end_time") is not None:
        return []
    cells = f"cell(s) {', '.join(map(str, never))} never ran" if never else "the run never finished"
    return [f"notebook {name!r} is half-run ({path}: {cells}; an interrupted or killed run); rerun it with "
            f"`python -m residual_lib.book run --only {name}`"]


def log_problems(log: str) -> list[str]:
    """Lines of a jupyter-book build log that report a warning, an error or a failed execution."""
    return [line for line in log.splitlines() if LOG_PROBLEM.search(line)]


def build_site(layout: Layout) -> Path:
    """`jupyter-book build book -W --keep-going`, logged to book/_build/build.log; raise on any problem.

    Executed pages with an error or a cell that never ran stop the build before it starts: no such page
    is rendered into the site.
    """
    broken = executed_errors(layout, toc_notebooks(layout))
    if broken:
        raise BookError("not building the site: executed notebooks are failed or half-run:\n" + "\n".join(broken))
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(layout.book_dir), "-W", "--keep-going"]
    print("== " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=layout.root, capture_output=True, text=True)
    log = ANSI.sub("", proc.stdout + proc.stderr)
    layout.build_log.parent.mkdir(parents=True, exist_ok=True)
    write_text(layout.build_log, log)
    sys.stderr.write(log)
    problems = log_problems(log)
    if proc.returncode != 0 or problems:
        raise BookError(f"jupyter-book build failed (exit {proc.returncode}); full log: {layout.build_log}\n"
                        + "\n".join(problems))
    return layout.book_dir / "_build" / "html" / "index.html"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m residual_lib.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, help_text in (("run", "execute notebooks into book/notebooks/"),
                               ("build", "run every selected notebook, then build the site")):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("--profile", default="toy", choices=PROFILES)
        p.add_argument("--only", nargs="+", metavar="NAME", help="run only these toc notebooks")
        p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="override a parameter in every selected notebook that declares it (YAML value)")
        p.add_argument("--root", type=Path, default=REPO_ROOT,
                       help="project root holding book/ and notebooks/ (default: this repository)")
        p.add_argument("--quiet", action="store_true", help="do not echo the notebooks' own output")
        p.add_argument("--jobs", "-j", type=positive_int, default=1,
                       help="notebooks run at once, each in its own process, output to book/_generated/logs/ "
                            "(default 1: one after another, output echoed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    layout = Layout(args.root.resolve())
    try:
        run(layout, args.profile, args.only, parse_overrides(args.param), log_output=not args.quiet,
            jobs=args.jobs)
        if args.command == "build":
            print(f"== site: {build_site(layout)}", file=sys.stderr)
    except BookError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    return 0

