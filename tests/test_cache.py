"""Unit cache: round trip against the in-memory decomposition, reuse, resume after SIGKILL, corruption, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from residual_lib.cache import CorruptCacheError, UnitCache, extract, subsample
from residual_lib.decompose import decompose
from residual_lib.units import unit_names
from unit_fixtures import RandomImages, tiny_model

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _extract(model, data, root, **kw):
    kw = {"n": None, "shard_size": 8, "batch_size": 4, "device": "cpu", **kw}
    return extract(model, data, root=root, **kw)


def test_round_trip_matches_in_memory_decomposition(model, tmp_path):
    """output_space() of every cached unit equals decompose() on the same images; units sum to the embedding."""
    data = RandomImages(20)
    cache = _extract(model, data, tmp_path)
    assert cache.units == unit_names(3, 4) and cache.n == 20 and cache.embed_dim == 24
    assert cache.heads == [u for u in cache.units if ".H" in u]
    images = torch.stack([model.preprocess(data[i][0]) for i in range(20)])
    with torch.no_grad():
        units = decompose(model, images)
        ref = model.encode_image(images)
    for name in cache.units:
        np.testing.assert_allclose(cache.output_space(name), units[name].numpy(), atol=1e-6, err_msg=name)
    np.testing.assert_allclose(cache.embedding, ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(sum(cache.output_space(u) for u in cache.units), cache.embedding, atol=1e-5)
    np.testing.assert_array_equal(cache.labels, np.arange(20) % 3)
    assert cache.coords("L2.H1").shape == (20, 18) and cache.coords("L0.MLP").shape == (20, 24)
    basis = cache.basis("L2.H1")
    np.testing.assert_allclose(basis @ basis.T, np.eye(18), atol=1e-5)
    np.testing.assert_allclose(cache.coords("L2.H1") @ basis + cache.offset("L2.H1"), cache.output_space("L2.H1"))
    m = cache.manifest
    assert m["complete"] and m["params"]["convention"] == "paper" and m["params"]["n_shards"] == 3
    assert m["params"]["weights_sha256"] and m["params"]["library_version"] and len(m["content_sha256"]) == 64
    assert isinstance(cache._shard(0, "head_coords"), np.memmap)
    with pytest.raises(KeyError, match="unknown unit 'L9.H0'"):
        cache.coords("L9.H0")


def test_subset_is_seeded_sorted_and_recorded(model, tmp_path):
    data = RandomImages(30)
    a = _extract(model, data, tmp_path, n=10, seed=3)
    idx = subsample(30, 10, 3)
    assert list(idx) == sorted(idx) and len(set(idx)) == 10
    np.testing.assert_array_equal(a.labels, idx % 3)
    assert not np.array_equal(idx, subsample(30, 10, 4))
    b = _extract(model, data, tmp_path, n=10, seed=4)
    assert a.path != b.path and "n10-seed3" in str(a.path)


def test_complete_cache_is_reused_without_running_the_model(model, tmp_path, monkeypatch):
    data = RandomImages(12)
    first = _extract(model, data, tmp_path)
    monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("model ran on a complete cache"))
    again = _extract(model, data, tmp_path)
    assert again.manifest["content_sha256"] == first.manifest["content_sha256"]


def test_centred_convention_and_float16_storage(model, tmp_path):
    data = RandomImages(10)
    full = _extract(model, data, tmp_path, convention="centred")
    half = _extract(model, data, tmp_path, convention="centred", dtype="float16")
    assert half.path != full.path and half.manifest["params"]["dtype"] == "float16"
    assert full.manifest["params"]["convention"] == "centred" and half.coords("L1.H1").dtype == np.float16
    for name in ("EMB", "L1.H1", "L2.MLP"):
        scale = np.abs(full.output_space(name)).max()
        np.testing.assert_allclose(half.output_space(name), full.output_space(name), atol=2e-3 * scale)


def test_bfloat16_autocast_extraction_is_keyed_apart(model, tmp_path):
    data = RandomImages(8)
    fp32 = _extract(model, data, tmp_path)
    bf16 = _extract(model, data, tmp_path, amp="bfloat16")
    assert bf16.path != fp32.path and bf16.manifest["params"]["amp"] == "bfloat16"
    rel = np.linalg.norm(bf16.embedding - fp32.embedding, axis=1) / np.linalg.norm(fp32.embedding, axis=1)
    assert rel.max() < 5e-2


_KILLED_RUN = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from unit_fixtures import RandomImages, tiny_model
    from residual_lib.cache import extract
    extract(tiny_model(), RandomImages(48, delay={delay}), n=None, shard_size=8, batch_size=4, device="cpu",
            root={root!r})
""")


def _run_until_shards(root: Path, shards: int, delay: float) -> None:
    """Start an extraction in a subprocess and SIGKILL it once `shards` shards are on disk."""
    code = _KILLED_RUN.format(tests=str(TESTS), delay=delay, root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list(root.glob("*/*/*/shards/0*"))) >= shards:
                break
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_to_the_same_content_hash(model, tmp_path):
    """Kill an extraction after 2 of 6 shards; the rerun keeps them, builds the rest, and equals an uninterrupted run."""
    data = RandomImages(48)
    reference = _extract(model, data, tmp_path / "uninterrupted")
    killed = tmp_path / "killed"
    _run_until_shards(killed, 2, delay=0.05)
    (path,) = list(killed.glob("*/*/*"))
    assert not json.loads((path / "manifest.json").read_text())["complete"]
    kept = sorted(p.name for p in (path / "shards").glob("0*"))
    assert 2 <= len(kept) < 6, f"the kill came too late to test resuming: {kept}"
    with pytest.raises(CorruptCacheError, match="incomplete"):
        UnitCache(path)
    mtimes = {name: (path / "shards" / name / "head_coords.npy").stat().st_mtime_ns for name in kept}
    resumed = _extract(model, data, killed)
    assert resumed.manifest["content_sha256"] == reference.manifest["content_sha256"]
    assert all((path / "shards" / n / "head_coords.npy").stat().st_mtime_ns == t for n, t in mtimes.items())
    assert not list((path / "shards").glob(".*")), "temporary shard directories left behind"


def _flip_byte(path: Path, offset: int = -5) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_byte_is_refused_on_open_and_rebuilt_by_extract(model, tmp_path):
    data = RandomImages(24)
    cache = _extract(model, data, tmp_path)
    good = cache.output_space("L1.H2").copy()
    content = cache.manifest["content_sha256"]
    target = cache.path / "shards" / "00001" / "head_coords.npy"
    _flip_byte(target)
    with pytest.raises(CorruptCacheError, match=r"shards/00001/head_coords.npy.*rerun extract"):
        UnitCache(cache.path)
    repaired = _extract(model, data, tmp_path)
    assert repaired.manifest["content_sha256"] == content
    np.testing.assert_array_equal(repaired.output_space("L1.H2"), good)


def test_corrupt_basis_and_missing_shard_are_rebuilt(model, tmp_path):
    data = RandomImages(24)
    cache = _extract(model, data, tmp_path)
    content = cache.manifest["content_sha256"]
    _flip_byte(cache.path / "head_basis.npy")
    with pytest.raises(CorruptCacheError, match="head_basis.npy"):
        UnitCache(cache.path)
    import shutil

    shutil.rmtree(cache.path / "shards" / "00002")
    repaired = _extract(model, data, tmp_path)
    assert repaired.manifest["content_sha256"] == content and UnitCache(repaired.path).n == 24


def test_clear_errors(model, tmp_path):
    with pytest.raises(ValueError, match="dataset is empty"):
        _extract(model, RandomImages(0), tmp_path)
    with pytest.raises(ValueError, match=r"n=50 is not in 1..10 \(the dataset has 10 images\)"):
        _extract(model, RandomImages(10), tmp_path, n=50)
    with pytest.raises(ValueError, match=r"expected a uint8 \(3, 32, 32\) tensor for model 'ViT-B-32'.*\(3, 40, 40\)"):
        _extract(model, RandomImages(4, image_size=40), tmp_path)
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        _extract("nope", RandomImages(4), tmp_path)
    with pytest.raises(ValueError, match="unknown storage dtype 'int8'; valid: float32, float16"):
        _extract(model, RandomImages(4), tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="unknown convention 'mean'"):
        _extract(model, RandomImages(4), tmp_path, convention="mean")
    with pytest.raises(ValueError, match="unknown autocast dtype"):
        _extract(model, RandomImages(4), tmp_path, amp="int8")
    with pytest.raises(TypeError, match="registered name or a Dataset with a `.spec`"):
        _extract(model, [(torch.zeros(3, 32, 32, dtype=torch.uint8), 0)], tmp_path)
    with pytest.raises(KeyError, match="unknown dataset 'no-such-dataset'"):
        _extract(model, "no-such-dataset", tmp_path)
    with pytest.raises(FileNotFoundError, match="no unit cache"):
        UnitCache(tmp_path / "nowhere")
    assert not list(tmp_path.rglob("*.npy")), "a failed call left files behind"
