"""Train one toy CLIP variant and print its training time and per-attribute zero-shot accuracy.

    .venv/bin/python bench/bench_toy_train.py --out /tmp/v1                      # the toy profile's config
    .venv/bin/python bench/bench_toy_train.py --out /tmp/v2 --steps 900 --threads 2 --value-copies 1

Overrides any field of the toy profile's `TrainConfig` and trains into --out (never the profile's own
folder), then reports wall and CPU seconds (CPU seconds of all threads; with other work on the machine,
CPU seconds per step compare variants better than wall time), the load average before and after, and the
zero-shot accuracy of every in-distribution attribute (the toy world's six) on the `--split` split. The
budget (issues 13 and 22, quiet 2-core machine): training <= 240 s wall, every attribute >= 90%; timings depend
on the CPU's instruction sets (printed: torch's CPU capability), bf16 above all.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import fields, replace
from pathlib import Path

IN_DISTRIBUTION = ("toy-shape", "toy-colour", "toy-pattern", "toy-position", "toy-size", "toy-background")


def main() -> None:
    from residual_lib.toy.train import CONFIGS

    base = CONFIGS["toy"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the variant's checkpoint")
    p.add_argument("--split", default="val", help="split of the zero-shot evaluation (val: choosing; test: reporting)")
    p.add_argument("--checkpoint", type=Path, help="evaluate this checkpoint instead of training")
    for f in fields(base):
        if f.name in ("profile", "n_stated"):
            continue
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(base, f.name)), default=getattr(base, f.name))
    args = p.parse_args()
    config = replace(base, **{f.name: getattr(args, f.name) for f in fields(base) if hasattr(args, f.name)})
    checkpoint = args.checkpoint
    if checkpoint is None:
        from residual_lib.toy.train import train

        import torch

        print(config, flush=True)
        print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {os.cpu_count()} cores", flush=True)
        load, wall, cpu = os.getloadavg(), time.perf_counter(), time.process_time()
        checkpoint = train(config, args.out, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"trained in {wall:.1f} s wall, {cpu:.1f} s CPU ({1000 * cpu / config.steps:.0f} ms CPU per step); "
              f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}", flush=True)

    from residual_lib.models.open_clip import OpenClipAdapter
    from residual_lib.toy.evaluate import zero_shot_table
    from residual_lib.toy.model import from_checkpoint, preprocess_of, tokenizer_of

    module = from_checkpoint("toy", checkpoint)
    model = OpenClipAdapter(module, "toy:variant", preprocess=preprocess_of(module), tokenizer=tokenizer_of("toy"))
    table = zero_shot_table(model, IN_DISTRIBUTION, split=args.split)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"lowest: {table['accuracy'].min():.3f} ({table.loc[table['accuracy'].idxmin(), 'dataset']})")


if __name__ == "__main__":
    main()
