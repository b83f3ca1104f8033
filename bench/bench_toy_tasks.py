"""Where each Section 4 method lands on candidate toy tasks: Base, coarse selection, Lin, RD, RD*, RDY, Full finetuning.

    .venv/bin/python bench/bench_toy_tasks.py                          # the toy profile's Section 4 datasets
    .venv/bin/python bench/bench_toy_tasks.py --datasets toy-sketch toy-digits --checkpoint PATH
    .venv/bin/python bench/bench_toy_tasks.py --screen --datasets ...     # Base and a linear probe only (fast)

The measurement behind the choice of the toy profile's Section 4 tasks (a task shows the paper's story only
when Base is well below Full finetuning): one row per task with test accuracies, the gap Full - Base and the
seconds the task took. Uses the same library calls as the Table 1 and Figure 5 pages (caches under
`artifacts_dir()/cache`), with the toy Figure 5 page's sizes and budgets unless the command line overrides
them. The coarse selections (U|T, S: 5% of heads scored on validation; H: every head) need no training; O is
left to the Table 1 page.
--screen skips the unit caches: Base and a logistic-regression probe on the output embedding (a lower bound on
what finetuning reaches), to shortlist candidates cheaply.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml

from residual_lib.alignment.tasks import full_finetuning, in_memory, load_task, residual_alignment
from residual_lib.store.cache import extract
from residual_lib.data.datasets import dataset_spec
from residual_lib.alignment.residual import Architecture
from residual_lib.alignment.selection import coarse_selection
from residual_lib.experiments import fig05_tab02
from residual_lib.alignment.training import FINETUNE_MAX_LR, TrainConfig

PARAMS = Path(__file__).resolve().parents[1] / "notebooks" / "params" / "toy" / "fig05_tab02_residual_alignment.yaml"


def _model(checkpoint: Path | None):
    """The toy CLIP as the pages load it, or the weights of another checkpoint of the same architecture."""
    from residual_lib.models.registry import load_model

    if checkpoint is None:
        return load_model("toy-clip")
    from residual_lib.models.open_clip import OpenClipAdapter
    from residual_lib.toy.model import from_checkpoint, preprocess_of, tokenizer_of

    module = from_checkpoint("toy", checkpoint)
    model = OpenClipAdapter(module, "toy-clip", preprocess=preprocess_of(module), tokenizer=tokenizer_of("toy"))
    model.weights = str(checkpoint)
    return model


def screen(model, datasets: list[str], n_train: int, n_test: int) -> pd.DataFrame:
    """Base zero-shot and a linear probe on the image embedding, per dataset (test accuracies)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from residual_lib.data.datasets import load_dataset
    from residual_lib.toy.evaluate import image_embeddings
    from residual_lib.alignment.classifier import Classifier

    rows = []
    for name in datasets:
        start = time.perf_counter()
        train, test = load_dataset(name, "train"), load_dataset(name, "test")
        x_train = image_embeddings(model, train.images[:n_train]).numpy()
        x_test = image_embeddings(model, test.images[:n_test])
        y_test = test.labels[:n_test]
        base = Classifier.for_dataset(model, name).accuracy(x_test, y_test)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, train.labels[:n_train].numpy())
        rows.append({"dataset": name, "classes": dataset_spec(name).n_classes, "Base": base,
                     "Probe": probe.score(x_test.numpy(), y_test.numpy()), "seconds": time.perf_counter() - start})
        rows[-1]["Probe-Base"] = rows[-1]["Probe"] - base
    return pd.DataFrame(rows)


def pages_table() -> pd.DataFrame:
    """Per task of the toy Section 4 pages: Base, the coarse selections (U|T, S, R, H, O), Lin, RD, RD*, RDY and
    Full finetuning, from the pages' `run` with their toy parameters (stored results are read, not retrained)."""
    from residual_lib.experiments import tab01

    params = {}
    for name, module in (("tab01_coarse_unit_alignment", tab01), ("fig05_tab02_residual_alignment", fig05_tab02)):
        raw = yaml.safe_load((PARAMS.parent / f"{name}.yaml").read_text())
        params[name] = module.Params.from_dict({k: v for k, v in raw.items() if k in module.Params.names()})
    coarse = tab01.run(params["tab01_coarse_unit_alignment"]).tables["ours"]
    fig05 = fig05_tab02.run(params["fig05_tab02_residual_alignment"]).tables["accuracy"]
    wide = fig05.pivot_table(index="dataset", columns="method", values="accuracy", sort=False)
    table = coarse.set_index("dataset")[["B", "U|T", "S", "R", "H", "O"]].join(wide, how="outer")
    table["Full-Base"] = table["Full finetuning"] - table["Base"]
    order = ["Base", "B", "Lin", "RD", "RD*", "RDY", "U|T", "S", "R", "H", "O", "Full finetuning", "Full-Base"]
    return table[[c for c in order if c in table]].reset_index()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    page = {**asdict(fig05_tab02.Params()), **yaml.safe_load(PARAMS.read_text())}  # the toy Figure 5 page's values
    p.add_argument("--datasets", nargs="+", default=page["datasets"], help="default: the page's `datasets`")
    p.add_argument("--checkpoint", type=Path, help="toy CLIP weights (default: the toy profile's model)")
    p.add_argument("--n-train", type=int, default=page["n_train"])
    p.add_argument("--n-val", type=int, default=page["n_val"])
    p.add_argument("--n-test", type=int, default=page["n_test"])
    p.add_argument("--n-reference", type=int, default=page["n_reference"])
    p.add_argument("--max-epochs", type=int, default=page["max_epochs"])
    p.add_argument("--patience", type=int, default=page["patience"])
    p.add_argument("--finetune-epochs", type=int, default=page["finetune_max_epochs"], help="0: no Full finetuning")
    p.add_argument("--finetune-range-steps", type=int, default=page["finetune_range_steps"])
    p.add_argument("--screen", action="store_true", help="Base and a linear probe on the embedding only")
    p.add_argument("--pages", action="store_true",
                   help="the toy Table 1 and Figure 5 pages' own results, one row per task (trained if not stored)")
    args = p.parse_args()
    datasets = args.datasets
    if args.pages:
        print(pages_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return

    model = _model(args.checkpoint)
    if args.screen:
        table = screen(model, datasets, args.n_train, args.n_test)
        print(f"n_train {args.n_train}, n_test {args.n_test}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return
    arch = Architecture.from_model(model)
    config = TrainConfig(max_epochs=args.max_epochs, patience=args.patience, progress=False)
    ft_config = TrainConfig(max_epochs=args.finetune_epochs, patience=args.patience, max_lr=FINETUNE_MAX_LR,
                            range_steps=args.finetune_range_steps, progress=False)
    reference = in_memory(extract(model, "toy-mixed", split="train", n=args.n_reference, verify=False))
    rows = []
    for name in datasets:
        start = time.perf_counter()
        task = load_task(model, name, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test)
        coarse = coarse_selection(task.val, task.test, task.classifier, 0.05, 10)
        out = residual_alignment(task, arch, reference, ("Lin", "RD", "RD*", "RDY"), config)
        row = {"dataset": name, "classes": dataset_spec(name).n_classes, "Base": out["Base"].test_accuracy,
               **{k: coarse[k] for k in ("U|T", "S", "H")},
               **{k: t.test_accuracy for k, t in out.items() if k != "Base"}}
        if args.finetune_epochs:
            row["Full"] = full_finetuning(model, task, args.n_train, args.n_val, args.n_test, 0, ft_config).test_accuracy
            row["Full-Base"] = row["Full"] - row["Base"]
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    print(f"\nn_train {args.n_train}, n_val {args.n_val}, n_test {args.n_test}, epochs {args.max_epochs} "
          f"(finetuning {args.finetune_epochs}, its range test {args.finetune_range_steps} steps), "
          f"patience {args.patience}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
