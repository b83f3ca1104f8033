"""Stage times of the toy book build in one run: training the toy CLIP, then each page executed by the book runner.

    .venv/bin/python bench/bench_toy_build.py                        # fresh artifacts (a temporary folder): everything
    .venv/bin/python bench/bench_toy_build.py --only train           # the training stage alone
    .venv/bin/python bench/bench_toy_build.py --only tab01_coarse_unit_alignment --artifacts artifacts
    .venv/bin/python bench/bench_toy_build.py --jobs 2                # as `make book`: one book build, training inside

Each stage is a subprocess, as `make book` runs it: `python -m residual_lib.toy.train --profile toy`, then
`python -m residual_lib.book run --profile toy --only NAME --quiet` per page in the table of contents' order
(later pages reuse the caches earlier ones wrote, as in a real build). With the default fresh folder, the
times are those of a first build after the packages are installed; with --artifacts pointing at a used
folder, training is a no-op and caches are reused. The budget (issue 13, quiet 2-core machine): training
<= 240 s, each page <= 90 s. Beside each wall time: the CPU seconds of the stage's processes (user + system,
every thread) and the load average, since a loaded machine is slower (and its waiting threads inflate the CPU
seconds too). The first and last lines give the machine: torch's CPU capability (the widest instruction set its
kernels use, e.g. AVX2 or AVX512; bf16 arithmetic is fast only with AVX512-BF16 or AMX), the core count and the
load average (1, 5 and 15 minutes); the last also gives the whole's wall and CPU seconds and their ratio to the
10-minute budget.

With --jobs N the build runs as `make book` runs it: one `python -m residual_lib.book build --jobs N` that trains the
toy model in one worker beside the pages that read no toy model, then runs N pages at once, then the site; the
table gives the training's and each page's runtime (manifest, build report) and the book stage's wall time.
The budget of the whole (training, pages and site after the packages are installed): 10 minutes.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = {"train": 240.0}
PAGE_BUDGET_S = 90.0
BUILD_BUDGET_S = 600.0


def pages() -> list[str]:
    """The toc's notebook pages, in build order."""
    from residual_lib.book.runner import Layout, toc_notebooks

    return toc_notebooks(Layout(ROOT))


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished descendant process so far (the page kernels included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage(name: str, cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run one stage's command; its wall and CPU seconds and exit status."""
    start, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if proc.returncode:
        print(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
    return seconds, cpu, proc.returncode


def machine() -> str:
    """torch's CPU capability, the core count and the load average: what the times depend on."""
    import torch

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {os.cpu_count()} cores "
            f"({len(os.sched_getaffinity(0))} usable); load average {load} (1, 5, 15 min)")


def report_runtimes() -> dict[str, float]:
    """Each page's runtime in the book runner's build report."""
    import csv

    from residual_lib.book.runner import REPORT_FIELDS, TOTAL_ROW, Layout

    with Layout(ROOT).report.open(newline="") as f:
        return {r[REPORT_FIELDS[0]]: float(r[REPORT_FIELDS[3]]) for r in csv.DictReader(f)
                if r[REPORT_FIELDS[0]] != TOTAL_ROW}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, help="artifacts folder (default: a fresh temporary one)")
    p.add_argument("--only", nargs="+", metavar="STAGE", help="stages to run: train and/or page names")
    p.add_argument("--jobs", type=int, help="run the pages as make book does: one book build, this many at once")
    args = p.parse_args()
    names = ["train", *pages()]
    chosen = args.only or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        p.error(f"unknown stages {unknown}; valid: {', '.join(names)}")
    with tempfile.TemporaryDirectory(prefix="toy-build-") as tmp:
        artifacts = args.artifacts or Path(tmp)
        env = {**os.environ, "RESIDUAL_ARTIFACTS": str(artifacts.resolve()), "PYTHONPATH": str(ROOT)}
        print(f"artifacts {artifacts}; {machine()}", flush=True)
        rows, failed = [], 0

        def show(name: str, seconds: float, cpu: float | None, rc: int, budget: float) -> None:
            nonlocal failed
            verdict = "FAILED" if rc else ("ok" if seconds <= budget else "over budget")
            rows.append((name, seconds, budget, verdict, cpu))
            failed += bool(rc)
            used = "" if cpu is None else f"{cpu:8.1f} s CPU"
            print(f"{name:40s} {seconds:8.1f} s wall {used:14s}  (budget {budget:.0f} s: {verdict}; "
                  f"load {os.getloadavg()[0]:.2f})", flush=True)

        stages = [n for n in names if n in chosen]
        pages_chosen = [n for n in stages if n != "train"]
        if "train" in stages and not (args.jobs and pages_chosen):
            cmd = [sys.executable, "-m", "residual_lib.toy.train", "--profile", "toy"]
            show("train", *stage("train", cmd, env), BUDGET_S["train"])
        if args.jobs and pages_chosen:
            # as make book: the runner trains the toy model in one worker beside the pages that do not read it
            cmd = [sys.executable, "-m", "residual_lib.book", "build", "--profile", "toy", "--jobs", str(args.jobs),
                   "--quiet", *(["--only", *pages_chosen] if args.only else [])]
            seconds, cpu, rc = stage("book", cmd, env)
            manifest = artifacts / "toy" / "toy" / "manifest.json"
            if "train" in stages and manifest.is_file():
                import json

                print(f"  {'toy model (trained in the book stage)':38s} "
                      f"{json.loads(manifest.read_text())['train_seconds']:8.1f} s wall", flush=True)
            for name, runtime in report_runtimes().items():
                if name in pages_chosen:
                    print(f"  {name:38s} {runtime:8.1f} s wall (CPU: in the book stage's; budget "
                          f"{PAGE_BUDGET_S:.0f} s: {'ok' if runtime <= PAGE_BUDGET_S else 'over budget'})", flush=True)
            show(f"book build ({args.jobs} pages at once, site)", seconds, cpu, rc, BUILD_BUDGET_S)
        else:
            for name in pages_chosen:
                cmd = [sys.executable, "-m", "residual_lib.book", "run", "--profile", "toy", "--only", name, "--quiet"]
                show(name, *stage(name, cmd, env), PAGE_BUDGET_S)
        total, total_cpu = sum(r[1] for r in rows), sum(r[4] or 0.0 for r in rows)
        print(f"{'total':40s} {total:8.1f} s wall {total_cpu:8.1f} s CPU  ({total / BUILD_BUDGET_S:.2f} of the "
              f"{BUILD_BUDGET_S / 60:.0f}-minute budget of a whole build; "
              f"{'pages one after another, unlike make book' if pages_chosen and not args.jobs else 'as run'})")
        print(f"after: {machine()}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
