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
        hashes.json               {file: sha256} of the files above

A shard is written into a temporary directory and renamed into place, so it either exists whole or
not at all; an interrupted extraction resumes at the first shard that is missing. Every shard is
checked against its sha256 before it is used: `extract` rebuilds a shard that fails, `UnitCache`
refuses to open a cache with one (naming it). Hashing reads every byte once per open: about 300 MiB/s
on one core here (bench/bench_cache.py), so milliseconds for toy caches and about 25 s for a
paper-scale ViT-L/14 cache of 80k images in float16 (~7.4 GB). We pay that rather than trust file
times, since silent corruption does not change them; `verify=False` skips it. One writer per cache.

Subsampling: when n < len(dataset), the rows are a uniform random subset without replacement
(numpy `default_rng(seed)`), kept in dataset order; not stratified, because the labels are only
known after reading every image. Rows are processed in fixed batches inside each shard, so a resumed
run computes exactly the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .version import __version__
from .adapters.base import ResidualModel
from .decompose import check_convention
from .device import resolve_device
from .paths import artifacts_dir
from .units import is_head, parse_unit, unit_names

STORAGE_DTYPES = ("float32", "float16")
AMP_DTYPES = ("bfloat16", "float16")
SHARD_FILES = ("emb", "head_coords", "mlp", "embedding", "labels")
FORMAT = 1


class CorruptCacheError(RuntimeError):
    """A cache file does not match the hash recorded when it was written."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_hash(model: ResidualModel) -> str:
    """sha256 over the image tower's parameters and buffers (names, shapes and bytes, sorted by name)."""
    module = getattr(model.module, "visual", model.module)
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _content_hash(file_hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(file_hashes):
        h.update(f"{name}={file_hashes[name]}\n".encode())
    return h.hexdigest()


class _Preprocessed(Dataset):
    """Rows `indices` of `dataset`, preprocessed by the model: (float (3, S, S), int label)."""

    def __init__(self, dataset, indices: np.ndarray, model: ResidualModel):
        self.dataset, self.indices, self.model = dataset, indices, model

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.dataset[int(self.indices[i])]
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
        from .datasets import load_dataset

        return load_dataset(dataset, split)
    if not hasattr(dataset, "spec"):
        raise TypeError("dataset must be a registered name or a Dataset with a `.spec` (residual_lib.datasets.DatasetSpec)")
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
        """'done' (a complete cache), 'partial' (an interrupted one) or 'todo', from disk only."""
        found = "todo"
        for folder in self.folders(root):
            manifest = folder / "manifest.json"
            if manifest.is_file():
                try:
                    if json.loads(manifest.read_text()).get("complete"):
                        return "done"
                except json.JSONDecodeError:
                    pass
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
    Dataset of (image, label) with `.spec`; n: number of images (None = all; a seeded subset otherwise);
    dtype: storage of coordinates ("float32" or "float16"); amp: autocast dtype for the forward pass
    ("bfloat16" or "float16"; None = full float32); root: folder holding caches (default
    `artifacts_dir()/cache`). Memory is bounded by batch_size and shard_size, not by n.
    """
    from .models import load_model

    check_convention(convention)
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage dtype {dtype!r}; valid: {', '.join(STORAGE_DTYPES)}")
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(f"unknown autocast dtype {amp!r}; valid: {', '.join(AMP_DTYPES)} or None")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size ({batch_size}) and shard_size ({shard_size}) must be positive")
    dev = resolve_device(device)
    model = load_model(model, device=str(dev)) if isinstance(model, str) else model.to(dev)
    data = _resolve_dataset(dataset, split)
    name = data.spec.name
    indices = subsample(len(data), n, seed)
    model.preprocess(data[int(indices[0])][0])  # a wrong image size or type fails here, before any file is written
    wh = weights_hash(model)
    path = cache_dir(model, name, split, n, seed, convention, dtype, wh, amp, root)
    path.mkdir(parents=True, exist_ok=True)

    L, H, r, E = model.n_layers, model.n_heads, model.d_head + 2, model.embed_dim
    n_rows = len(indices)
    n_shards = -(-n_rows // shard_size)
    params = {
        "format": FORMAT, "library_version": __version__, "model": model.name,
        "weights": getattr(model, "weights", None), "weights_sha256": wh, "dataset": name, "split": split,
        "n": n_rows, "n_requested": n, "seed": seed, "convention": convention, "dtype": dtype,
        "amp": amp, "shard_size": shard_size, "batch_size": batch_size, "n_shards": n_shards,
        "n_layers": L, "n_heads": H, "r": r, "embed_dim": E, "units": unit_names(L, H),
        "indices_sha256": hashlib.sha256(indices.astype(np.int64).tobytes()).hexdigest(),
    }
    manifest_path = path / "manifest.json"
    old = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if old is not None and _key(old.get("params", {})) != _key(params):
        shutil.rmtree(path / "shards", ignore_errors=True)
        old = None
    if old is not None and old.get("complete") and not _bad_files(path, old["files"], verify):
        return UnitCache(path, verify=False)
    _atomic_json(manifest_path, {"params": params, "complete": False})
    for stale in (path / "shards").glob(".*"):  # temporary shards of a killed run (one writer per cache)
        shutil.rmtree(stale, ignore_errors=True)

    bases = model.head_bases(convention)
    files = {}
    for key, t in (("head_basis", bases.basis), ("head_offset", bases.offset)):
        _atomic_save(path / f"{key}.npy", t.detach().cpu().float().numpy())
        files[f"{key}.npy"] = sha256_file(path / f"{key}.npy")

    loader_data = _Preprocessed(data, indices, model)
    amp_ctx = (lambda: torch.autocast(dev.type, dtype=getattr(torch, amp))) if amp else nullcontext
    done = {k: _shard_ok(path, k) for k in range(n_shards)}
    todo = [k for k in range(n_shards) if done[k] is None]
    resumed = n_rows - sum(min(shard_size, n_rows - k * shard_size) for k in todo)
    with tqdm(total=n_rows, initial=resumed, desc=f"units {model.name} {name}/{split}", unit="img") as bar:
        for k in todo:
            rows = range(k * shard_size, min((k + 1) * shard_size, n_rows))
            subset = torch.utils.data.Subset(loader_data, list(rows))
            loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
            parts = {f: [] for f in SHARD_FILES}
            for images, labels in loader:
                with torch.no_grad(), amp_ctx():
                    dec = model.decompose_batch(images.to(dev), convention)
                parts["emb"].append(dec.emb.float().cpu())
                parts["head_coords"].append(dec.head_coords.float().cpu().permute(1, 2, 0, 3))
                parts["mlp"].append(dec.mlp.float().cpu().transpose(0, 1))
                parts["embedding"].append(dec.embedding.float().cpu())
                parts["labels"].append(labels.long())
                bar.update(len(labels))
            done[k] = _write_shard(path, k, parts, dtype)
    for k in range(n_shards):
        files.update({f"shards/{k:05d}/{f}": h for f, h in done[k].items()})
    manifest = {"params": params, "complete": True, "files": files, "content_sha256": _content_hash(files),
                "shapes": {"emb": [n_rows, E], "head_coords": [L, H, n_rows, r], "mlp": [L, n_rows, E],
                           "embedding": [n_rows, E], "labels": [n_rows]}}
    _atomic_json(manifest_path, manifest)
    return UnitCache(path, verify=False)


def _key(params: dict) -> dict:
    """The parameters that decide a cache's content (batch size only changes float rounding)."""
    return {k: v for k, v in params.items() if k != "batch_size"}


def _write_shard(path: Path, k: int, parts: dict[str, list], dtype: str) -> dict[str, str]:
    """Write one shard into a temporary directory, then rename it into place; return its file hashes."""
    shards = path / "shards"
    shards.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{k:05d}-", dir=shards))
    axis = {"emb": 0, "head_coords": 2, "mlp": 1, "embedding": 0, "labels": 0}
    store = {"emb": dtype, "head_coords": dtype, "mlp": dtype, "embedding": "float32", "labels": "int64"}
    hashes = {}
    for f in SHARD_FILES:
        arr = torch.cat(parts[f], dim=axis[f]).numpy().astype(store[f])
        np.save(tmp / f"{f}.npy", arr)
        hashes[f"{f}.npy"] = sha256_file(tmp / f"{f}.npy")
    (tmp / "hashes.json").write_text(json.dumps(hashes, sort_keys=True))
    final = shards / f"{k:05d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return hashes


def _shard_ok(path: Path, k: int) -> dict[str, str] | None:
    """The shard's file hashes if it exists whole and every file matches its recorded hash, else None."""
    shard = path / "shards" / f"{k:05d}"
    try:
        hashes = json.loads((shard / "hashes.json").read_text())
    except (OSError, ValueError):
        return None
    if set(hashes) != {f"{f}.npy" for f in SHARD_FILES}:
        return None
    ok = all((shard / f).exists() and sha256_file(shard / f) == h for f, h in hashes.items())
    return hashes if ok else None


def _bad_files(path: Path, files: dict[str, str], verify: bool) -> list[str]:
    """Files that are missing or (when verifying) whose sha256 differs from the manifest's."""
    return [f for f, h in files.items()
            if not (path / f).exists() or (verify and sha256_file(path / f) != h)]


class UnitCache:
    """A finished cache on disk, read lazily (memory-mapped); the same interface as `units.UnitSet`.

    Opening verifies every file's sha256 against the manifest unless verify=False, and refuses a
    cache with a mismatching or missing file (rerun `extract` with the same arguments to rebuild it).
    """

    def __init__(self, path: str | Path, verify: bool = True):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"no unit cache at {self.path} (no manifest.json)")
        self.manifest = json.loads(manifest_path.read_text())
        if not self.manifest.get("complete"):
            raise CorruptCacheError(f"unit cache at {self.path} is incomplete (an extraction was interrupted); "
                                    "rerun extract() with the same arguments to resume it")
        bad = _bad_files(self.path, self.manifest["files"], verify)
        if bad:
            raise CorruptCacheError(f"unit cache at {self.path}: {len(bad)} file(s) missing or not matching their "
                                    f"sha256 ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}); rerun extract() "
                                    "with the same arguments to rebuild them")
        p = self.manifest["params"]
        self._L, self._H, self._E = p["n_layers"], p["n_heads"], p["embed_dim"]
        self._units = list(p["units"])
        self._unit_set = set(self._units)
        self._arrays: dict[tuple[int, str], np.ndarray] = {}
        self._basis = np.load(self.path / "head_basis.npy", mmap_mode="r")
        self._offset = np.load(self.path / "head_offset.npy", mmap_mode="r")

    def _shard(self, k: int, name: str) -> np.ndarray:
        if (k, name) not in self._arrays:
            self._arrays[(k, name)] = np.load(self.path / "shards" / f"{k:05d}" / f"{name}.npy", mmap_mode="r")
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
