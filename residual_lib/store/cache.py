"""The unit cache: a dataset's residual units, streamed to disk once and read lazily by every analysis.

Layout of one cache directory (one per model weights, dataset, split, n, seed, convention, dtype)::

    manifest.json                 parameters, shapes, per-file sha256, content hash, "complete"
    head_basis.npy                (L, H, r, E) float32, orthonormal rows (fixed per model + convention)
    head_offset.npy               (L, H, E) float32
    shards/00000/                 rows [0, shard_size) of the (subsampled) dataset, written atomically
        emb.npy                   (m, E)        the embedding unit in output space
        head_coords.npy           (L, H, m, r)  heads in their bases' coordinates (unit-major: one head
                                                is a contiguous block, so `coords(u)` reads m*r numbers)
        mlp.npy                   (L, m, E)     MLPs in output space
        embedding.npy             (m, E) float32, the model's own image embedding
        labels.npy                (m,) int64
        hashes.json               {"algorithm": "xxh3_128", "files": {file: digest}} of the files above

A shard is written into a temporary directory and renamed into place, so it either exists whole or
not at all; an interrupted extraction resumes at the first shard that is missing. A full disk or a
read-only folder fails with the folder named and the temporary shard removed.

Integrity: every file is checked against its recorded digest before its first value is used, not at
open: opening a cache checks that every file exists and hashes only the head bases; each shard file
is hashed when it is first read (memory-mapped). Digests are xxh3-128 (the `xxhash` package; a
non-cryptographic hash is enough against accidental corruption). bench/bench_cache_open.py, for an 80k
ViT-L/14 float16 cache (7.4 GB) on this shared 2-core machine: hashing every byte with sha256 at each
open cost 15 s; an open now costs 0.03 s, and the first-read checks 0.28 s/GB (2.1 s if a page reads
every file, once per process).
Caches written before record sha256 and are checked with it. We hash rather than trust file times,
since silent corruption does not change them; `verify=False` skips it. A corrupt file found by a
reader marks the cache incomplete, so the next `extract` with the same arguments rebuilds that shard.

Reuse and conflicts: a finished cache is reused whatever the shard size, batch size or library
version of the call (they do not change its content); a partial one resumes with its own shard size.
A folder whose recorded content (weights, rows, format, ...) differs from the call's is an error
naming the fields; nothing finished is deleted. The one exception is the images: a registered dataset's cache
records a digest of the manifest fields that decide its images and labels (`DatasetSpec.images_digest`), and a
cache whose dataset manifest changed under the same name is re-extracted in place, saying so on stderr. A
Dataset object passed directly records no digest and is keyed as before (by its name and rows only); caches
written before the digest existed are reused (`_same_images` says why). A lost or truncated manifest is rebuilt
from the shards, each of which carries its own digests. One process extracts a cache at a time (an exclusive
`flock` on `.lock` in its folder); a second one says it waits, then reuses the finished cache.

Subsampling: when n < len(dataset), the rows are a uniform random subset without replacement
(numpy `default_rng(seed)`), kept in dataset order; not stratified, because the labels are only
known after reading every image. Rows are processed in fixed batches inside each shard, so a resumed
run computes exactly the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import to_pil_image
from tqdm import tqdm

from ..data.images import to_rgb
from ..version import __version__
from ..units.adapter import ResidualModel
from ..units.decompose import check_convention
from ..device import resolve_device
from ..files import AtomicWriteError, atomic_directory, atomic_file, file_digest, read_json, write_text
from ..paths import artifacts_dir
from ..units.unit_set import is_head, parse_unit, unit_names

STORAGE_DTYPES = ("float32", "float16")
AMP_DTYPES = ("bfloat16", "float16")
SHARD_FILES = ("emb", "head_coords", "mlp", "embedding", "labels")
FORMAT = 1
DIGEST = "xxh3_128"
# Settings that do not change a cache's numbers: a finished cache is reused whatever they are.
NOT_CONTENT = ("batch_size", "shard_size", "n_shards", "library_version")
# Compared apart from the other content: a different value means stale images (re-extract), not a conflict.
IMAGES = "images_sha256"


class CorruptCacheError(RuntimeError):
    """A cache file does not match the hash recorded when it was written, or the manifest is unreadable."""


class CacheConflictError(RuntimeError):
    """A cache folder holds a cache whose recorded content differs from what the call asks for."""


def weights_hash(model: ResidualModel) -> str:
    """sha256 over the image tower's parameters and buffers (names, shapes and bytes, sorted by name)."""
    from ..models.digest import weights_digest

    return weights_digest(getattr(model.module, "visual", model.module).state_dict().items())


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _atomic_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def _content_hash(file_hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(file_hashes):
        h.update(f"{name}={file_hashes[name]}\n".encode())
    return h.hexdigest()


class _Preprocessed(Dataset):
    """Rows `indices` of `dataset`, preprocessed by the model: (float (3, S, S), int label)."""

    def __init__(self, dataset, indices: np.ndarray, model: ResidualModel, name: str):
        self.dataset, self.indices, self.model, self.name = dataset, indices, model, name

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        row = int(self.indices[i])
        image, label = self.dataset[row]
        # Any dataset may be passed in, not only the manifests' (whose loaders already give RGB)
        image = to_rgb(image, f"dataset {self.name!r} row {row}")
        size = getattr(self.model, "image_size", None)
        if getattr(self.dataset, "resizable", False) and isinstance(image, torch.Tensor) and size is not None \
                and tuple(image.shape[-2:]) != (size, size):
            # rendered images (the toy world's 32 px) reach a network of another input size as PIL images, which
            # its own preprocessing resizes as it resizes a photograph; a wrong-size tensor elsewhere is an error
            image = to_pil_image(image)
        return self.model.preprocess(image), -1 if label is None else int(label)


def subsample(size: int, n: int | None, seed: int) -> np.ndarray:
    """Row indices: all of them when n is None or size, else a seeded uniform subset in order."""
    if size == 0:
        raise ValueError("the dataset is empty; nothing to extract")
    if n is None or n == size:
        return np.arange(size)
    if not 0 < n <= size:
        raise ValueError(f"n={n} is not in 1..{size} (the dataset has {size} images)")
    return np.sort(np.random.default_rng(seed).choice(size, size=n, replace=False))


def _resolve_dataset(dataset, split: str):
    if isinstance(dataset, str):
        from ..data.datasets import load_dataset

        return load_dataset(dataset, split)
    if not hasattr(dataset, "spec"):
        raise TypeError("dataset must be a registered name or a Dataset with a `.spec` (residual_lib.data.datasets.DatasetSpec)")
    return dataset


@dataclass(frozen=True)
class CacheKey:
    """What decides one cache's folder besides the weights: `extract(model, dataset, **key.extract_kwargs())`.

    Experiments declare the caches they read as keys (`caches(params)`); the planner runs them.
    """

    model: str
    dataset: str
    split: str = "train"
    n: int | None = None
    seed: int = 0
    dtype: str = "float32"
    convention: str = "paper"
    amp: str | None = None

    @property
    def leaf(self) -> str:
        """The folder name under `<model>-<weights hash>/<dataset>/`: the one naming rule."""
        n = "all" if self.n is None else self.n
        return f"{self.split}-n{n}-seed{self.seed}-{self.convention}-{self.dtype}" + (
            f"-amp-{self.amp}" if self.amp else "")

    def extract_kwargs(self) -> dict:
        """Keyword arguments of `extract` that this key fixes."""
        return {"split": self.split, "n": self.n, "seed": self.seed, "dtype": self.dtype,
                "convention": self.convention, "amp": self.amp}

    def folders(self, root: Path | None = None) -> list[Path]:
        """The existing folders of this key, one per weights hash of the model name."""
        base = Path(root) if root is not None else artifacts_dir() / "cache"
        return sorted(p for p in base.glob(f"{self.model}-*/{self.dataset}/{self.leaf}")
                      if p.parent.parent.name.rsplit("-", 1)[0] == self.model)

    def status(self, root: Path | None = None) -> str:
        """'done' (a complete cache whose files are all there, whole, of the images the dataset's manifest describes
        now), 'partial' (an interrupted, damaged or stale one) or 'todo', from disk and the dataset's manifest; the
        files' digests are checked when the cache is read."""
        found = "todo"
        for folder in self.folders(root):
            manifest = _read_manifest(folder)
            if manifest is not None and manifest.get("complete") and _files_whole(folder, manifest):
                # like extract: a cache of images the dataset's manifest no longer describes is redone
                params = manifest["params"]
                if IMAGES not in params or _same_images(params, _images_digest(self.dataset)):
                    return "done"
            found = "partial"
        return found


def cache_dir(model: ResidualModel, dataset_name: str, split: str, n: int | None, seed: int,
              convention: str, dtype: str, wh: str, amp: str | None = None, root: Path | None = None) -> Path:
    """The directory that holds (or will hold) one cache."""
    base = Path(root) if root is not None else artifacts_dir() / "cache"
    leaf = CacheKey(model.name, dataset_name, split, n, seed, dtype, convention, amp).leaf
    return base / f"{model.name}-{wh[:12]}" / dataset_name / leaf


def extract(model: ResidualModel | str, dataset, split: str = "train", n: int | None = None, seed: int = 0,
            device: str = "auto", batch_size: int = 64, dtype: str = "float32", convention: str = "paper",
            shard_size: int = 1024, root: str | Path | None = None, amp: str | None = None,
            num_workers: int = 0, verify: bool = True) -> "UnitCache":
    """Stream a dataset's residual units to disk (or reuse / resume / repair a cache there) and open it.

    model: a `ResidualModel` or a name for `residual_lib.load_model`; dataset: a registered name or a
    Dataset of (image, label) with `.spec` (a name's cache is redone when its manifest's images change; a Dataset
    object's is keyed by its name and rows only); n: number of images (None = all; a seeded subset otherwise);
    dtype: storage of coordinates ("float32" or "float16"); amp: autocast dtype for the forward pass
    ("bfloat16" or "float16"; None = full float32); root: folder holding caches (default
    `artifacts_dir()/cache`). Memory is bounded by batch_size and shard_size, not by n.
    """
    from ..models.registry import load_model

    check_convention(convention)
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage dtype {dtype!r}; valid: {', '.join(STORAGE_DTYPES)}")
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(f"unknown autocast dtype {amp!r}; valid: {', '.join(AMP_DTYPES)} or None")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size ({batch_size}) and shard_size ({shard_size}) must be positive")
    dev = resolve_device(device)
    model = load_model(model, device=str(dev)) if isinstance(model, str) else model.to(dev)
    wh = weights_hash(model)
    settings = dict(split=split, n=n, seed=seed, convention=convention, dtype=dtype, amp=amp, shard_size=shard_size,
                    batch_size=batch_size, images=_images_digest(dataset))
    declared = _declared_size(dataset, split)
    if declared is not None:
        # A finished cache opens without loading its dataset (rendering or decoding every image of the split
        # costs more than reading the cache); the manifest's declared split size fixes the rows' indices.
        path, params = _cache_params(model, wh, dataset, declared, root, **settings)
        if _finished(path, params):
            return UnitCache(path, verify=verify)
    data = _resolve_dataset(dataset, split)
    path, params = _cache_params(model, wh, data.spec.name, len(data), root, **settings)
    indices = subsample(len(data), n, seed)
    _Preprocessed(data, indices[:1], model, data.spec.name)[0]  # a wrong image size or type fails here, before writing
    if _reusable(path, params):  # before any write: a finished cache on a read-only mount still opens
        return UnitCache(path, verify=verify)
    with _exclusive(path):
        if _reusable(path, params):
            print(f"unit cache at {path}: finished by the other process; reusing it", file=sys.stderr, flush=True)
            return UnitCache(path, verify=verify)
        return _extract_locked(model, data, indices, path, params, dev, batch_size, num_workers)


def _declared_size(dataset, split: str) -> int | None:
    """The size a registered dataset's manifest declares for `split`; None for a Dataset object or no such split."""
    if not isinstance(dataset, str):
        return None
    from ..data.datasets import dataset_spec

    size = dataset_spec(dataset).splits.get(split, {}).get("size")
    return int(size) if isinstance(size, int) and size > 0 else None


def _images_digest(dataset) -> str | None:
    """The registered dataset's `images_digest`; None for a Dataset object (its images are its own business)."""
    if not isinstance(dataset, str):
        return None
    from ..data.datasets import dataset_spec

    return dataset_spec(dataset).images_digest()


def _same_images(old_params: dict, images: str | None) -> bool:
    """Whether a cache's recorded images digest agrees with `images`.

    A missing digest on either side counts as agreeing. Caches written before the digest existed are reused as they
    are: they are the default build's caches on users' machines, made from the shipped manifests, and re-extracting
    them (hours for the paper's models) for a change they almost surely do not have would cost more than the rare
    edited manifest; delete such a cache's folder to rebuild it. A Dataset object has no digest to compare.
    """
    recorded = old_params.get(IMAGES)
    return recorded is None or images is None or recorded == images


def _cache_params(model: ResidualModel, wh: str, name: str, size: int, root: str | Path | None, *, split: str,
                  n: int | None, seed: int, convention: str, dtype: str, amp: str | None, shard_size: int,
                  batch_size: int, images: str | None) -> tuple[Path, dict]:
    """(folder, recorded parameters) of the cache of `n` rows of a split of `size` images."""
    indices = subsample(size, n, seed)
    L, H, r, E = model.n_layers, model.n_heads, model.d_head + 2, model.embed_dim
    n_rows = len(indices)
    params = {
        "format": FORMAT, "library_version": __version__, "model": model.name,
        "weights": getattr(model, "weights", None), "weights_sha256": wh, "dataset": name, "split": split,
        "n": n_rows, "n_requested": n, "seed": seed, "convention": convention, "dtype": dtype,
        "amp": amp, "shard_size": shard_size, "batch_size": batch_size, "n_shards": -(-n_rows // shard_size),
        "n_layers": L, "n_heads": H, "r": r, "embed_dim": E, "units": unit_names(L, H),
        "indices_sha256": hashlib.sha256(indices.astype(np.int64).tobytes()).hexdigest(),
    }
    if images is not None:
        params[IMAGES] = images
    return cache_dir(model, name, split, n, seed, convention, dtype, wh, amp, root), params


def _finished(path: Path, params: dict) -> bool:
    """Whether `path` holds a finished cache of exactly this content with every file present (never raises)."""
    old = _read_manifest(path)
    return (old is not None and bool(old.get("complete")) and _content_key(old["params"]) == _content_key(params)
            and _same_images(old["params"], params.get(IMAGES)) and _files_whole(path, old))


def _extract_locked(model: ResidualModel, data, indices: np.ndarray, path: Path, params: dict, dev: torch.device,
                    batch_size: int, num_workers: int) -> "UnitCache":
    """Write (or resume, or repair) the cache at `path`; the caller holds its lock."""
    old = _read_manifest(path)
    if old is None and (path / "manifest.json").exists():
        print(f"unit cache at {path}: manifest.json is unreadable; rebuilding it from the shards, which carry "
              "their own digests (only shards that fail them are recomputed)", file=sys.stderr, flush=True)
    if old is not None and not _same_images(old["params"], params.get(IMAGES)):
        # Its shards pass their digests but hold other images: none of them may be resumed.
        print(f"unit cache at {path}: the manifest of dataset {params['dataset']!r} changed since this cache was "
              "extracted (its images or labels differ); re-extracting", file=sys.stderr, flush=True)
        shutil.rmtree(path / "shards", ignore_errors=True)
        old = None
    shard_size = _resumed_shard_size(path, old, params["shard_size"])
    n_rows = params["n"]
    params = {**params, "shard_size": shard_size, "n_shards": -(-n_rows // shard_size)}
    n_shards, convention, dtype, amp = params["n_shards"], params["convention"], params["dtype"], params["amp"]
    _atomic_json(path / "manifest.json", {"params": params, "complete": False})
    for stale in [*(path / "shards").glob(".*"), *path.glob(".*.tmp")]:  # temporaries of a killed run
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)

    bases = model.head_bases(convention)
    files = {}
    for key, t in (("head_basis", bases.basis), ("head_offset", bases.offset)):
        _atomic_save(path / f"{key}.npy", t.detach().cpu().float().numpy())
        files[f"{key}.npy"] = file_digest(path / f"{key}.npy", DIGEST)

    loader_data = _Preprocessed(data, indices, model, params["dataset"])
    amp_ctx = (lambda: torch.autocast(dev.type, dtype=getattr(torch, amp))) if amp else nullcontext
    rows_of = lambda k: min(shard_size, n_rows - k * shard_size)  # noqa: E731
    done = {k: _shard_ok(path, k, rows_of(k)) for k in range(n_shards)}
    todo = [k for k in range(n_shards) if done[k] is None]
    resumed = n_rows - sum(rows_of(k) for k in todo)
    name = params["dataset"]
    with tqdm(total=n_rows, initial=resumed, desc=f"units {model.name} {name}/{params['split']}", unit="img") as bar:
        for k in todo:
            rows = range(k * shard_size, k * shard_size + rows_of(k))
            subset = torch.utils.data.Subset(loader_data, list(rows))
            loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
            parts = {f: [] for f in SHARD_FILES}
            for images, labels in _one_thread_batches(loader):
                with torch.no_grad(), amp_ctx():
                    dec = model.decompose_batch(images.to(dev), convention)
                parts["emb"].append(dec.emb.float().cpu())
                parts["head_coords"].append(dec.head_coords.float().cpu().permute(1, 2, 0, 3))
                parts["mlp"].append(dec.mlp.float().cpu().transpose(0, 1))
                parts["embedding"].append(dec.embedding.float().cpu())
                parts["labels"].append(labels.long())
                bar.update(len(labels))
            try:
                done[k] = _write_shard(path, k, parts, dtype)
            except AtomicWriteError as exc:
                raise AtomicWriteError(exc.errno, f"{exc.strerror}; the finished shards are kept: make room "
                                                  "and rerun extract() with the same arguments to resume") from exc
    for k in range(n_shards):
        files.update({f"shards/{k:05d}/{f}": h for f, h in done[k].items()})
    L, H, r, E = params["n_layers"], params["n_heads"], params["r"], params["embed_dim"]
    manifest = {"params": params, "complete": True, "hash": DIGEST, "files": files,
                "content_sha256": _content_hash(files),
                "shapes": {"emb": [n_rows, E], "head_coords": [L, H, n_rows, r], "mlp": [L, n_rows, E],
                           "embedding": [n_rows, E], "labels": [n_rows]}}
    _atomic_json(path / "manifest.json", manifest)
    return UnitCache(path, verify=False)


def _one_thread_batches(loader: DataLoader):
    """The loader's batches, each fetched with one torch thread (the forward pass between keeps the default).

    Preprocessing runs a handful of elementwise ops per image; at 112 px and more an image passes torch's
    parallel grain size, and waking a second thread for each op costs several times the op itself (DINOv2-S at
    112 px: 1 ms an image on one thread, 11 CPU-ms on two under load).
    """
    threads, batches = torch.get_num_threads(), iter(loader)
    while True:
        torch.set_num_threads(1)
        try:
            batch = next(batches, None)
        finally:
            torch.set_num_threads(threads)
        if batch is None:
            return
        yield batch


def _content_key(params: dict) -> dict:
    """The parameters that decide a cache's numbers (batch size only changes float rounding), the images digest
    aside (`_same_images`)."""
    return {k: v for k, v in params.items() if k not in NOT_CONTENT and k != IMAGES}


def _read_manifest(path: Path) -> dict | None:
    """The cache's manifest, or None when it is missing or unreadable (truncated, not JSON)."""
    try:
        manifest = read_json(path / "manifest.json")
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("params"), dict) else None


def _files_whole(path: Path, manifest: dict) -> bool:
    """Whether every file the manifest lists exists and each array holds as many bytes as its header declares: a
    check of sizes, cheap enough for planning (memory-mapping reads only the headers), not of digests."""
    for relative in manifest.get("files", {}):
        try:
            np.load(path / relative, mmap_mode="r")
        except (OSError, ValueError, EOFError):  # missing, empty, or shorter than its header says
            return False
    return True


def _reusable(path: Path, params: dict) -> bool:
    """Whether `path` holds a finished cache of this content with every file present.

    Raises CacheConflictError when the folder holds (finished or partial) work on different content.
    """
    old = _read_manifest(path)
    if old is None:
        return False
    ours, theirs = _content_key(params), _content_key(old["params"])
    if ours != theirs:
        fields = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        diff = "; ".join(f"{k}: {theirs.get(k)!r} on disk, {ours.get(k)!r} now" for k in fields if k != "units")
        raise CacheConflictError(
            f"the unit cache folder {path} holds a {'finished' if old.get('complete') else 'partial'} cache of "
            f"different content ({diff or 'units differ'}); nothing was deleted. If that cache is no longer "
            f"wanted, delete the folder and rerun extract()")
    return bool(old.get("complete")) and _same_images(old["params"], params.get(IMAGES)) and _files_whole(path, old)


def _resumed_shard_size(path: Path, old: dict | None, requested: int) -> int:
    """A partial cache keeps its own shard size (its finished shards stay valid); else `requested`."""
    size = old["params"]["shard_size"] if old is not None else None
    if size is None:  # no readable manifest: shard 0, if any, tells
        try:
            size = int(np.load(path / "shards" / "00000" / "labels.npy", mmap_mode="r").shape[0])
        except (OSError, ValueError):
            size = requested
    if size != requested:
        print(f"unit cache at {path}: resuming with its own shard_size={size} (not {requested}); the "
              "shard size does not change the cache's values", file=sys.stderr, flush=True)
    return size


@contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on the cache folder, saying so when another process holds it first."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / ".lock", "a")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the unit cache folder {path} ({exc.strerror}); point "
                                 "RESIDUAL_ARTIFACTS (or root=) at a writable folder") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"unit cache at {path}: another process is extracting it; waiting for it to finish",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stored_dtypes(dtype: str) -> dict[str, str]:
    """Each shard file's dtype: the units in the cache's storage dtype, the model's embedding always float32."""
    return {"emb": dtype, "head_coords": dtype, "mlp": dtype, "embedding": "float32", "labels": "int64"}


def cache_bytes(n_layers: int, n_heads: int, d_head: int, embed_dim: int, n: int, dtype: str = "float32") -> int:
    """Bytes on disk of a complete cache of `n` images, from the format above (the .npy headers and hashes aside):
    per image L*H*(d_head+2) head coordinates, (L+1)*E MLP and EMB values in `dtype`, the embedding (E float32)
    and a label; per model the float32 head bases and offsets."""
    L, H, r, E = n_layers, n_heads, d_head + 2, embed_dim
    per_row = {"emb": E, "head_coords": L * H * r, "mlp": L * E, "embedding": E, "labels": 1}
    stored = _stored_dtypes(dtype)
    row = sum(per_row[f] * np.dtype(stored[f]).itemsize for f in SHARD_FILES)
    return n * row + 4 * L * H * (r * E + E)


def _write_shard(path: Path, k: int, parts: dict[str, list], dtype: str) -> dict[str, str]:
    """Write one shard into a temporary directory, then rename it into place; return its file digests."""
    shards = path / "shards"
    shards.mkdir(exist_ok=True)
    axis = {"emb": 0, "head_coords": 2, "mlp": 1, "embedding": 0, "labels": 0}
    store = _stored_dtypes(dtype)
    hashes = {}
    with atomic_directory(shards / f"{k:05d}") as tmp:
        for f in SHARD_FILES:
            arr = torch.cat(parts[f], dim=axis[f]).numpy().astype(store[f])
            np.save(tmp / f"{f}.npy", arr)
            hashes[f"{f}.npy"] = file_digest(tmp / f"{f}.npy", DIGEST)
        (tmp / "hashes.json").write_text(json.dumps({"algorithm": DIGEST, "files": hashes}, sort_keys=True))
    return hashes


def _shard_hashes(shard: Path) -> tuple[str, dict[str, str]] | None:
    """(algorithm, {file: digest}) from a shard's hashes.json (older shards: a flat sha256 mapping)."""
    try:
        recorded = read_json(shard / "hashes.json")
    except (OSError, ValueError):
        return None
    if isinstance(recorded.get("files"), dict):
        return recorded.get("algorithm", "sha256"), recorded["files"]
    return "sha256", recorded


def _shard_ok(path: Path, k: int, rows: int) -> dict[str, str] | None:
    """The shard's file digests if it exists whole with `rows` rows and every file matches, else None.

    Digests recorded with another algorithm (an older cache) are recomputed with ours once checked.
    """
    shard = path / "shards" / f"{k:05d}"
    recorded = _shard_hashes(shard)
    if recorded is None or set(recorded[1]) != {f"{f}.npy" for f in SHARD_FILES}:
        return None
    algorithm, hashes = recorded
    try:
        if np.load(shard / "labels.npy", mmap_mode="r").shape != (rows,):
            return None
    except (OSError, ValueError):
        return None
    if not all((shard / f).is_file() and file_digest(shard / f, algorithm) == h for f, h in hashes.items()):
        return None
    if algorithm != DIGEST:
        hashes = {f: file_digest(shard / f, DIGEST) for f in hashes}
        write_text(shard / "hashes.json", json.dumps({"algorithm": DIGEST, "files": hashes}, sort_keys=True))
    return hashes


class UnitCache:
    """A finished cache on disk, read lazily (memory-mapped); the same interface as `units.UnitSet`.

    Opening checks that every file exists and verifies the head bases; each shard file is verified
    against its digest when first read (verify=False skips both digests). A corrupt file raises
    CorruptCacheError naming it and marks the cache incomplete: rerun `extract` with the same
    arguments to rebuild it. `verify_all()` checks every file at once.
    """

    def __init__(self, path: str | Path, verify: bool = True):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"no unit cache at {self.path} (no manifest.json)")
        manifest = _read_manifest(self.path)
        if manifest is None:
            raise CorruptCacheError(f"unit cache at {self.path}: manifest.json is unreadable (truncated or not "
                                    "JSON); rerun extract() with the same arguments: it rebuilds the manifest from "
                                    "the shards, which carry their own digests, and recomputes only shards that "
                                    "fail them")
        self.manifest = manifest
        if not self.manifest.get("complete"):
            raise CorruptCacheError(f"unit cache at {self.path} is incomplete (an extraction was interrupted or a "
                                    "file was found corrupt); rerun extract() with the same arguments to finish it")
        self._digest = self.manifest.get("hash", "sha256")
        self._verify = verify
        self._checked: set[str] = set()
        missing = [f for f in self.manifest["files"] if not (self.path / f).is_file()]
        if missing:
            raise CorruptCacheError(f"unit cache at {self.path}: {len(missing)} file(s) missing "
                                    f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); rerun extract() "
                                    "with the same arguments to rebuild them")
        p = self.manifest["params"]
        self._L, self._H, self._E = p["n_layers"], p["n_heads"], p["embed_dim"]
        self._units = list(p["units"])
        self._unit_set = set(self._units)
        self._arrays: dict[tuple[int, str], np.ndarray] = {}
        self._basis = self._load("head_basis.npy")
        self._offset = self._load("head_offset.npy")

    def _check(self, relative: str) -> None:
        """Raise CorruptCacheError (and mark the cache incomplete) unless the file matches its digest."""
        if not self._verify or relative in self._checked:
            return
        if file_digest(self.path / relative, self._digest) != self.manifest["files"][relative]:
            try:  # the next extract() then re-checks every shard and rebuilds this one
                _atomic_json(self.path / "manifest.json", {**self.manifest, "complete": False, "corrupt": relative})
            except OSError:
                pass  # a read-only cache: the message still says what is wrong
            raise CorruptCacheError(f"unit cache at {self.path}: {relative} does not match its {self._digest} digest "
                                    "(the file is corrupt); rerun extract() with the same arguments to rebuild it")
        self._checked.add(relative)

    def _load(self, relative: str) -> np.ndarray:
        self._check(relative)
        return np.load(self.path / relative, mmap_mode="r")

    def verify_all(self) -> None:
        """Check every file against its digest now (the first failure raises CorruptCacheError)."""
        for relative in self.manifest["files"]:
            self._check(relative)

    def _shard(self, k: int, name: str) -> np.ndarray:
        if (k, name) not in self._arrays:
            self._arrays[(k, name)] = self._load(f"shards/{k:05d}/{name}.npy")
        return self._arrays[(k, name)]

    def _gather(self, name: str, select=lambda a: a) -> np.ndarray:
        return np.concatenate([select(self._shard(k, name)) for k in range(self.manifest["params"]["n_shards"])])

    @property
    def units(self) -> list[str]:
        return list(self._units)

    @property
    def heads(self) -> list[str]:
        return [u for u in self._units if is_head(u)]

    @property
    def n(self) -> int:
        return int(self.manifest["params"]["n"])

    @property
    def embed_dim(self) -> int:
        return int(self._E)

    @property
    def embedding(self) -> np.ndarray:
        """(n, embed_dim) float32 the model's own image embedding."""
        return self._gather("embedding")

    @property
    def labels(self) -> np.ndarray:
        """(n,) int64 labels (-1 where the dataset has none)."""
        return self._gather("labels")

    def coords(self, unit: str) -> np.ndarray:
        """(n, r_u) the unit's points in the orthonormal coordinates of its subspace (storage dtype)."""
        kind, l, h = self._parse(unit)
        if kind == "head":
            return self._gather("head_coords", lambda a: a[l, h])
        if kind == "mlp":
            return self._gather("mlp", lambda a: a[l])
        return self._gather("emb")

    def basis(self, unit: str) -> np.ndarray:
        """(r_u, embed_dim) orthonormal rows spanning the unit's subspace (identity for EMB and MLPs)."""
        kind, l, h = self._parse(unit)
        return np.asarray(self._basis[l, h]) if kind == "head" else np.eye(self._E, dtype=np.float32)

    def offset(self, unit: str) -> np.ndarray:
        """(embed_dim,) the fixed vector every point of the unit shares (zero for EMB and MLPs)."""
        kind, l, h = self._parse(unit)
        return np.asarray(self._offset[l, h]) if kind == "head" else np.zeros(self._E, dtype=np.float32)

    def output_space(self, unit: str) -> np.ndarray:
        """(n, embed_dim) float32: the unit in the model's image-embedding space."""
        kind, l, h = self._parse(unit)
        c = self.coords(unit).astype(np.float32)
        if kind != "head":
            return c
        return c @ np.asarray(self._basis[l, h], dtype=np.float32) + np.asarray(self._offset[l, h], dtype=np.float32)

    def _parse(self, unit: str) -> tuple[str, int | None, int | None]:
        if unit not in self._unit_set:
            shown = ", ".join(self._units[:4] + ["..."] + self._units[-2:])
            raise KeyError(f"unknown unit {unit!r}; this cache has {len(self._units)} units: {shown}")
        return parse_unit(unit)

    def __repr__(self) -> str:
        p = self.manifest["params"]
        return (f"UnitCache({p['model']} on {p['dataset']}/{p['split']}, n={p['n']}, {len(self._units)} units, "
                f"{p['convention']}, {p['dtype']}, at {self.path})")
