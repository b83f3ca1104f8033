"""The authors' Random set: class-blob statistics, the byte conversion, split fractions, the dataset loader."""

import numpy as np
import pytest
import torch

from residual_lib.data.random_blobs import CENTRE_SHIFT, SPREAD, blob_blocks, class_blobs, to_bytes


def test_to_bytes_by_hand():
    """trunc(255 v) modulo 256: 0.3 -> 76; -0.3 -> 256 - 76 = 180; 0.999 -> 254; -0.001 -> 0; 1.3 -> 331 - 256 = 75."""
    x = torch.tensor([0.3, -0.3, 0.999, -0.001, 0.0, 1.3])
    assert to_bytes(x).tolist() == [76, 180, 254, 0, 0, 75]


def test_blob_statistics():
    """Per class: pixel means at c_k = linspace(-0.2, 0.2, 10)[k] (the centre shift averages out over pixels),
    spread 0.1 across images, per-pixel centre shift 0.05; 100 images of each class."""
    shape = (3, 16, 16)
    levels = np.linspace(-0.2, 0.2, 10)
    pixels = np.prod(shape)
    for k, block in blob_blocks(n_samples=1000, shape=shape, n_classes=10, seed=42):
        assert block.shape == (100, *shape)
        b = block.double()
        assert abs(b.mean().item() - levels[k]) < 4 * CENTRE_SHIFT / np.sqrt(pixels)
        assert b.std(dim=0).mean().item() == pytest.approx(SPREAD, rel=0.03)
        shift = b.mean(dim=0) - levels[k]  # centre shift plus the mean of 100 spreads
        assert shift.std().item() == pytest.approx(np.sqrt(CENTRE_SHIFT ** 2 + SPREAD ** 2 / 100), rel=0.1)


def test_draws_follow_the_authors_order_under_the_seed():
    """Class 0's centre is the first randn(shape) after manual_seed(42), its images the next randn(n, *shape)."""
    g = torch.Generator().manual_seed(42)
    centre = torch.randn(3, 4, 4, generator=g) * 0.05 + (-0.2)
    first = torch.randn(5, 3, 4, 4, generator=g) * 0.1 + centre
    _, block = next(blob_blocks(n_samples=50, shape=(3, 4, 4), n_classes=10, seed=42))
    torch.testing.assert_close(block, first)
    images, labels = class_blobs(n_samples=50, shape=(3, 4, 4), n_classes=10, seed=42, progress=False)
    assert images.shape == (50, 4, 4, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:5], to_bytes(first).permute(0, 2, 3, 1).numpy())
    assert np.array_equal(np.bincount(labels), np.full(10, 5))
    with pytest.raises(ValueError, match="multiple of n_classes"):
        next(blob_blocks(n_samples=55, shape=(3, 4, 4)))


def test_manifest_splits_are_80_10_10_stratified(tmp_path):
    from dataclasses import replace

    from residual_lib.data.datasets import dataset_spec
    from residual_lib.data.random_blobs import load_split

    spec = dataset_spec("random-blobs")
    small = replace(spec, source={**spec.source, "n_samples": 200, "image_size": 8})
    parts = {s: load_split(small, s, tmp_path) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [160, 20, 20]
    assert np.all(np.bincount(parts["val"].targets) == 2) and np.all(np.bincount(parts["train"].targets) == 16)
    every = np.concatenate([parts[s].indices for s in parts])
    assert sorted(every) == list(range(200))
    image, label = parts["test"][0]
    assert image.size == (8, 8) and image.mode == "RGB" and label == parts["test"].targets[0]
    again = load_split(small, "test", tmp_path)  # read back from the saved memmap
    assert np.array_equal(np.asarray(again[0][0]), np.asarray(image))
    assert [spec.splits[s]["size"] for s in ("train", "val", "test")] == [8000, 1000, 1000]
