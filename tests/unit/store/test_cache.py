"""Unit cache: round trip against the in-memory decomposition, reuse, resume after SIGKILL, corruption, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from residual_lib.store.cache import CacheKey, CorruptCacheError, UnitCache, extract, subsample
from residual_lib.units.decompose import decompose
from residual_lib.units.unit_set import unit_names
from unit_fixtures import RandomImages, tiny_model

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parents[2]  # where the shared helpers live


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


def _registered(monkeypatch, data, declared: int, **manifest) -> list[str]:
    """Serve `data` as the registered dataset 'tinyimages' whose manifest declares `declared` train images (and
    the other `manifest` fields given); returns the list that records each load."""
    import dataclasses

    from residual_lib.data import datasets

    spec = dataclasses.replace(data.spec, splits={"train": {"size": declared}}, **manifest)
    loads = []
    monkeypatch.setattr(datasets, "dataset_spec", lambda name: spec)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: loads.append(name) or data)
    return loads


def test_a_finished_cache_of_a_registered_dataset_opens_without_loading_the_dataset(model, tmp_path, monkeypatch):
    """Pages reuse caches by dataset name: loading (rendering, decoding) the split again would cost more than the
    cache; a manifest size that disagrees with the data falls back to loading it, never to another cache."""
    data = RandomImages(12)
    loads = _registered(monkeypatch, data, declared=12)
    first = _extract(model, "tinyimages", tmp_path, n=8)
    assert loads == ["tinyimages"]
    monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("model ran on a complete cache"))
    again = _extract(model, "tinyimages", tmp_path, n=8)
    assert loads == ["tinyimages"] and again.path == first.path
    assert again.manifest["content_sha256"] == first.manifest["content_sha256"]
    loads = _registered(monkeypatch, data, declared=13)  # the subset drawn from 13 rows is another one
    # a changed split size is a changed manifest, so the cache is redone: from the same 12 rows, the same numbers
    monkeypatch.delattr(model, "decompose_batch")
    again = _extract(model, "tinyimages", tmp_path, n=8)
    assert loads == ["tinyimages"] and again.manifest["content_sha256"] == first.manifest["content_sha256"]


def test_a_changed_dataset_manifest_re_extracts_its_cache(model, tmp_path, monkeypatch, capfd):
    """A manifest whose rendering changed under the same name (a texture's opacity) gives other images: the cache
    of the old ones is redone, not reused, and the planner no longer calls it done."""
    _registered(monkeypatch, RandomImages(12), declared=12)
    first = _extract(model, "tinyimages", tmp_path, n=8)
    old_embedding = np.array(first.embedding)
    key = CacheKey(model.name, "tinyimages", "train", 8)
    assert key.status(tmp_path) == "done"
    capfd.readouterr()
    textured = {"kind": "generated", "texture": 0.25}
    _registered(monkeypatch, RandomImages(12, seed=1), declared=12, source=textured)
    assert key.status(tmp_path) == "partial"
    again = _extract(model, "tinyimages", tmp_path, n=8)
    err = capfd.readouterr().err
    assert "the manifest of dataset 'tinyimages' changed" in err and "re-extracting" in err
    assert again.path == first.path and again.manifest["content_sha256"] != first.manifest["content_sha256"]
    assert not np.allclose(again.embedding, old_embedding)
    assert key.status(tmp_path) == "done"
    monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("model ran on a fresh cache"))
    assert _extract(model, "tinyimages", tmp_path, n=8).manifest["content_sha256"] == again.manifest["content_sha256"]


def test_editing_only_a_manifests_free_text_reuses_the_cache(model, tmp_path, monkeypatch):
    data = RandomImages(12)
    _registered(monkeypatch, data, declared=12)
    first = _extract(model, "tinyimages", tmp_path, n=8)
    _registered(monkeypatch, data, declared=12, notes="rewritten", title="Tiny", licence="CC0",
                templates=("a {}.",), source={"kind": "generated"})
    monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("a text edit recomputed the cache"))
    again = _extract(model, "tinyimages", tmp_path, n=8)
    assert again.manifest["content_sha256"] == first.manifest["content_sha256"]
    assert again.manifest["params"]["images_sha256"] == first.manifest["params"]["images_sha256"]


def test_a_cache_written_before_the_images_digest_is_reused(model, tmp_path, monkeypatch):
    """The default build's caches on users' machines predate the digest: they are reused, not recomputed."""
    _registered(monkeypatch, RandomImages(12), declared=12)
    first = _extract(model, "tinyimages", tmp_path, n=8)
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["params"].pop("images_sha256")
    (first.path / "manifest.json").write_text(json.dumps(manifest))
    _registered(monkeypatch, RandomImages(12, seed=1), declared=12, source={"kind": "generated", "texture": 0.25})
    assert CacheKey(model.name, "tinyimages", "train", 8).status(tmp_path) == "done"
    monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("a legacy cache was recomputed"))
    assert _extract(model, "tinyimages", tmp_path, n=8).manifest["content_sha256"] == first.manifest["content_sha256"]


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
    from residual_lib.store.cache import extract
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


def test_flipped_byte_is_refused_before_use_and_rebuilt_by_extract(model, tmp_path):
    data = RandomImages(24)
    cache = _extract(model, data, tmp_path)
    good = cache.output_space("L1.H2").copy()
    content = cache.manifest["content_sha256"]
    target = cache.path / "shards" / "00001" / "head_coords.npy"
    _flip_byte(target)
    opened = UnitCache(cache.path)  # opening hashes no shard; the first read of the file does
    np.asarray(opened.coords("EMB"))
    with pytest.raises(CorruptCacheError, match=r"shards/00001/head_coords.npy does not match.*rerun extract"):
        opened.coords("L1.H2")
    with pytest.raises(CorruptCacheError, match="incomplete"):
        UnitCache(cache.path)
    repaired = _extract(model, data, tmp_path)
    assert repaired.manifest["content_sha256"] == content
    np.testing.assert_array_equal(repaired.output_space("L1.H2"), good)
    _flip_byte(target)
    with pytest.raises(CorruptCacheError, match="00001/head_coords.npy"):
        UnitCache(cache.path).verify_all()


def test_open_hashes_only_the_bases(model, tmp_path, monkeypatch):
    """Issue 15: an open must not read every byte; each shard file is hashed once, on its first read."""
    import residual_lib.store.cache as cache_module

    cache = _extract(model, RandomImages(24), tmp_path)
    hashed = []
    real = cache_module.file_digest
    monkeypatch.setattr(cache_module, "file_digest", lambda p, a: hashed.append(Path(p).name) or real(p, a))
    opened = UnitCache(cache.path)
    assert sorted(hashed) == ["head_basis.npy", "head_offset.npy"]
    opened.coords("L0.H0"), opened.coords("L2.H3")
    assert sorted(hashed[2:]) == ["head_coords.npy"] * 3


def test_corrupt_basis_and_missing_shard_are_rebuilt(model, tmp_path):
    data = RandomImages(24)
    cache = _extract(model, data, tmp_path)
    content = cache.manifest["content_sha256"]
    _flip_byte(cache.path / "head_basis.npy")
    with pytest.raises(CorruptCacheError, match="head_basis.npy"):
        UnitCache(cache.path)
    repaired = _extract(model, data, tmp_path)
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


# ------------------------------------------------------------------ faults (issue 10)


def test_other_shard_size_or_library_version_reuses_a_finished_cache(model, tmp_path, monkeypatch):
    import residual_lib.store.cache as cache_module

    data = RandomImages(20)
    first = _extract(model, data, tmp_path)
    monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("a finished cache was recomputed"))
    again = _extract(model, data, tmp_path, shard_size=5, batch_size=2)
    monkeypatch.setattr(cache_module, "__version__", "99.0")
    newer = _extract(model, data, tmp_path)
    assert again.path == newer.path == first.path
    assert again.manifest["content_sha256"] == newer.manifest["content_sha256"] == first.manifest["content_sha256"]
    assert again.manifest["params"]["shard_size"] == 8


def test_partial_cache_resumes_with_its_own_shard_size(model, tmp_path, capfd):
    import shutil

    data = RandomImages(20)
    reference = _extract(model, data, tmp_path / "reference")
    partial = _extract(model, data, tmp_path / "partial")
    manifest = json.loads((partial.path / "manifest.json").read_text())
    (partial.path / "manifest.json").write_text(json.dumps({"params": manifest["params"], "complete": False}))
    shutil.rmtree(partial.path / "shards" / "00001")
    resumed = _extract(model, data, tmp_path / "partial", shard_size=5)
    assert "resuming with its own shard_size=8 (not 5)" in capfd.readouterr().err
    assert resumed.manifest["params"]["shard_size"] == 8
    assert resumed.manifest["content_sha256"] == reference.manifest["content_sha256"]


def test_a_folder_with_other_content_is_an_error_and_nothing_is_deleted(model, tmp_path):
    """The same folder name (n=10 of 'tinyimages', seed 0) for a dataset that grew: other rows, other numbers."""
    first = _extract(model, RandomImages(20), tmp_path, n=10)
    before = sorted(p.relative_to(first.path) for p in first.path.rglob("*.npy"))
    with pytest.raises(RuntimeError, match=r"unit cache folder .*train-n10-seed0-paper-float32 holds a finished "
                                           r"cache of different content \(indices_sha256: .*nothing was deleted"):
        _extract(model, RandomImages(30), tmp_path, n=10)
    assert sorted(p.relative_to(first.path) for p in first.path.rglob("*.npy")) == before
    UnitCache(first.path).verify_all()


def test_truncated_manifest_is_named_then_rebuilt_from_the_shards(model, tmp_path, monkeypatch, capfd):
    data = RandomImages(20)
    cache = _extract(model, data, tmp_path)
    manifest = cache.path / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    with pytest.raises(CorruptCacheError, match=rf"unit cache at {cache.path}: manifest.json is unreadable.*"
                                                r"rerun extract\(\) with the same arguments"):
        UnitCache(cache.path)
    monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("valid shards were recomputed"))
    rebuilt = _extract(model, data, tmp_path, shard_size=5)
    assert "manifest.json is unreadable; rebuilding it from the shards" in capfd.readouterr().err
    assert rebuilt.manifest["content_sha256"] == cache.manifest["content_sha256"]
    UnitCache(cache.path).verify_all()


def test_a_second_extraction_waits_for_the_first_and_reuses_its_cache(model, tmp_path, monkeypatch, capfd):
    """`flock` locks an open file, not a process: the first extraction runs in a thread with its own handle of
    the lock file, as another process would, and without an interpreter's start-up."""
    first: list = []
    thread = threading.Thread(target=lambda: first.append(_extract(tiny_model(), RandomImages(24, delay=0.1),
                                                                   tmp_path)))
    thread.start()
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("*/*/*/shards/0*")) and thread.is_alive() and time.time() < deadline:
            time.sleep(0.02)
        assert thread.is_alive(), "the first extraction ended before the second started"
        monkeypatch.setattr(model, "decompose_batch", lambda *a, **k: pytest.fail("both extractions did the work"))
        cache = _extract(model, RandomImages(24), tmp_path)
    finally:
        thread.join(timeout=120)
    err = capfd.readouterr().err
    assert "another process is extracting it; waiting for it to finish" in err
    assert "finished by the other process; reusing it" in err
    assert first[0].n == 24 and cache.n == 24


def test_disk_full_during_a_shard_write_names_the_folder_and_leaves_no_temporary(model, tmp_path, monkeypatch):
    import errno

    data = RandomImages(24)
    saves = []
    real_save = np.save

    def save(file, arr, *a, **k):
        saves.append(file)
        if len(saves) == 8:  # basis, offset, 5 files of shard 0: the first file of shard 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(file, arr, *a, **k)

    monkeypatch.setattr(np, "save", save)
    with pytest.raises(OSError, match=r"could not write 00001 in .*/train-nall-seed0-paper-float32/shards: "
                                      r"No space left on device"):
        _extract(model, data, tmp_path)
    (path,) = tmp_path.glob("*/*/*")
    assert [p.name for p in (path / "shards").iterdir()] == ["00000"], "a temporary shard was left behind"
    monkeypatch.setattr(np, "save", real_save)
    assert _extract(model, data, tmp_path).n == 24


def _read_only(monkeypatch, root: Path) -> None:
    """Refuse every write under `root` as a read-only mount does (errno EROFS); tests may run as root, where
    chmod does not stop writes."""
    import builtins
    import errno
    import io

    def guard(path):
        if str(Path(path).absolute()).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

    real_open, real_mkdir, real_replace = builtins.open, os.mkdir, os.replace

    def ro_open(file, mode="r", *a, **k):
        if isinstance(file, (str, Path)) and any(c in mode for c in "wax+"):
            guard(file)
        return real_open(file, mode, *a, **k)

    def ro_mkdir(path, *a, **k):
        guard(path)
        return real_mkdir(path, *a, **k)

    def ro_replace(src, dst, *a, **k):
        guard(dst)
        return real_replace(src, dst, *a, **k)

    for target in (builtins, io):
        monkeypatch.setattr(target, "open", ro_open)
    monkeypatch.setattr(os, "mkdir", ro_mkdir)
    monkeypatch.setattr(os, "replace", ro_replace)


def test_read_only_artifacts_reuse_works_and_a_new_cache_names_its_folder(model, tmp_path, monkeypatch):
    data = RandomImages(16)
    first = _extract(model, data, tmp_path)
    expected = first.output_space("L1.H1").copy()
    _read_only(monkeypatch, tmp_path)
    again = _extract(model, data, tmp_path)
    np.testing.assert_array_equal(again.output_space("L1.H1"), expected)
    with pytest.raises(OSError, match=r"cannot write the unit cache folder .*/train-nall-seed0-paper-float16 "
                                      r"\(Read-only file system\); point RESIDUAL_ARTIFACTS"):
        _extract(model, data, tmp_path, dtype="float16")


def test_the_users_umask_decides_file_and_folder_modes(model, tmp_path):
    old = os.umask(0o022)
    try:
        cache = _extract(model, RandomImages(16), tmp_path)
    finally:
        os.umask(old)
    modes = {str(p.relative_to(cache.path)): p.stat().st_mode & 0o777 for p in cache.path.rglob("*")}
    assert modes["shards/00000"] == 0o755 and modes["shards"] == 0o755
    assert {m for p, m in modes.items() if not p.endswith(("shards", "00000", "00001"))} == {0o644}, modes


def test_caches_written_with_sha256_digests_still_open_and_are_checked(model, tmp_path):
    """Caches extracted before the switch to xxh3 record sha256 (manifest without "hash", flat hashes.json)."""
    import hashlib

    cache = _extract(model, RandomImages(16), tmp_path)
    sha = {f: hashlib.sha256((cache.path / f).read_bytes()).hexdigest() for f in cache.manifest["files"]}
    manifest = {k: v for k, v in cache.manifest.items() if k != "hash"} | {"files": sha}
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    for shard in (cache.path / "shards").iterdir():
        (shard / "hashes.json").write_text(json.dumps({f: sha[f"shards/{shard.name}/{f}"]
                                                       for f in json.loads((shard / "hashes.json").read_text())["files"]}))
    UnitCache(cache.path).verify_all()
    _flip_byte(cache.path / "shards" / "00001" / "mlp.npy")
    with pytest.raises(CorruptCacheError, match=r"00001/mlp.npy does not match its sha256 digest"):
        UnitCache(cache.path).coords("L0.MLP")
    repaired = _extract(model, RandomImages(16), tmp_path)
    assert repaired.manifest["hash"] == "xxh3_128"
    assert json.loads((cache.path / "shards" / "00000" / "hashes.json").read_text())["algorithm"] == "xxh3_128"
    repaired.verify_all()


def test_a_resizable_dataset_reaches_a_model_of_another_size_through_its_own_resizing(model, tmp_path):
    """Toy-world images (32 px, drawn) run on DINOv2-S and CLIP-B/16 in Section 4: a dataset that declares itself
    `resizable` hands its wrong-size tensors over as PIL images, which the model resizes as it resizes photographs;
    any other dataset keeps the clear error (test_clear_errors)."""
    from PIL import Image

    data = RandomImages(6, image_size=40)
    data.resizable = True
    cache = _extract(model, data, tmp_path / "resized")
    expected = torch.stack([model.preprocess(Image.fromarray(data.images[i].permute(1, 2, 0).numpy()))
                            for i in range(6)])
    with torch.no_grad():
        reference = model.encode_image(expected)
    assert cache.n == 6
    np.testing.assert_allclose(cache.embedding, reference.numpy(), atol=1e-5)
