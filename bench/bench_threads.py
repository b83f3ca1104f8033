"""Extraction on one CPU thread against torch's default thread count, in one run: wall and CPU seconds.

The toy profile runs its pages on one thread (`threads: 1` in notebooks/params/toy/_defaults.yaml); this prints
the evidence on the machine at hand, with its load average (a busy machine is where a second thread costs most).

    .venv/bin/python bench/bench_threads.py [--model toy-clip] [--dataset toy-colour] [--n 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from residual_lib.store.cache import extract
from residual_lib.data.datasets import load_dataset
from residual_lib.device import cpu_threads
from residual_lib.models.registry import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="toy-clip")
    p.add_argument("--dataset", default="toy-colour")
    p.add_argument("--split", default="train")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="alternating runs per setting")
    a = p.parse_args()
    model = load_model(a.model, device="cpu")
    data = load_dataset(a.dataset, a.split)  # loaded once: the runs time preprocessing and the forward pass
    default = torch.get_num_threads()
    print(f"{a.model} on {a.n} images of {a.dataset}/{a.split}; torch default {default} threads; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()}")
    totals = {1: [0.0, 0.0], default: [0.0, 0.0]}
    for _ in range(a.repeats):
        for threads in totals:
            with cpu_threads(threads), tempfile.TemporaryDirectory() as tmp:
                wall, cpu = time.perf_counter(), time.process_time()
                extract(model, data, split=a.split, n=a.n, root=tmp, device="cpu", batch_size=a.batch_size)
                totals[threads][0] += time.perf_counter() - wall
                totals[threads][1] += time.process_time() - cpu
    for threads, (wall, cpu) in totals.items():
        print(f"{threads} thread(s): {wall / a.repeats:7.2f} s wall  {cpu / a.repeats:7.2f} CPU-s  "
              f"({a.n * a.repeats / wall:.0f} images/s)")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
