"""Model factory: any open_clip architecture, or a name registered in `data_manifests/models/*.yaml`.

A model manifest has: name, family (open_clip | toy | timm | transformers | blip), arch (the family's
own identifier), pretrained (weights tag; for the toy family, the toy profile), quick_gelu (bool),
notes. Registered names win over open_clip architecture names.
"""

from __future__ import annotations

import importlib
from functools import cache

import torch
import yaml

from .adapters.base import ResidualModel
from .device import resolve_device
from .paths import MANIFESTS

FAMILIES = ("open_clip", "toy", "timm", "transformers", "blip")
# family -> module providing `load(entry: dict, pretrained, **kw) -> ResidualModel`; written beside each adapter
_ADAPTER_MODULES = {
    "timm": "residual_lib.adapters.timm_vit",
    "transformers": "residual_lib.adapters.transformers",
    "blip": "residual_lib.adapters.blip",
}


@cache
def _registry() -> dict[str, dict]:
    entries = {}
    for path in sorted((MANIFESTS / "models").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        missing = {"name", "family", "arch"} - raw.keys()
        if missing:
            raise ValueError(f"model manifest {path} lacks {sorted(missing)}")
        if raw["family"] not in FAMILIES:
            raise ValueError(f"model manifest {path}: family {raw['family']!r} is not one of {', '.join(FAMILIES)}")
        entries[raw["name"]] = raw
    return entries


def list_models() -> list[str]:
    """Registered model names, then every open_clip architecture name."""
    import open_clip

    registered = list(_registry())
    return registered + [m for m in open_clip.list_models() if m not in registered]


def _unknown_model(name: str) -> KeyError:
    import open_clip

    common = [m for m in ("ViT-B-32", "ViT-B-32-quickgelu", "ViT-B-16", "ViT-B-16-quickgelu", "ViT-L-14",
                          "ViT-L-14-quickgelu") if m in open_clip.list_models()]
    return KeyError(f"unknown model {name!r}; registered: {', '.join(_registry()) or '(none)'}; "
                    f"or any of open_clip's {len(open_clip.list_models())} architectures, e.g. {', '.join(common)} "
                    f"(all names: residual_lib.models.list_models())")


def load_model(name: str, pretrained: str | bool | None = None, device: str = "auto", **kw) -> ResidualModel:
    """A `ResidualModel` for a registered name or an open_clip architecture, in eval mode on `device`.

    pretrained: None = the manifest's weights (random init for a bare open_clip architecture);
    False = random init even for a registered model (offline stand-in runs); otherwise an open_clip tag
    or checkpoint path (for the toy family: the toy profile). Extra keyword arguments go to the
    family's loader (for open_clip: `open_clip.create_model`, e.g. `force_quick_gelu=True`).
    """
    dev = resolve_device(device)
    entry = _registry().get(name)
    if entry is None:
        return _load_open_clip(name, name, pretrained or None, **kw).to(dev)
    family = entry["family"]
    weights = entry.get("pretrained") if pretrained is None else (pretrained or None)
    if family == "open_clip":
        if entry.get("quick_gelu"):
            kw.setdefault("force_quick_gelu", True)
        model = _load_open_clip(entry["arch"], name, weights, **kw)
    elif family == "toy":
        trained = pretrained is not False
        model = _load_toy(name, (weights if trained else entry.get("pretrained")) or "toy", trained=trained)
    else:
        try:
            module = importlib.import_module(_ADAPTER_MODULES[family])
        except ModuleNotFoundError as err:
            raise NotImplementedError(
                f"model {name!r} needs the {family!r} adapter ({_ADAPTER_MODULES[family]}), which cannot be "
                f"imported here ({err}); families that need nothing extra: open_clip, toy") from err
        model = module.load(entry, weights, **kw)
    return model.to(dev)


def _load_open_clip(arch: str, name: str, pretrained: str | None, **kw) -> ResidualModel:
    import os

    import open_clip

    from .adapters.open_clip import OpenClipAdapter

    if arch not in open_clip.list_models():
        raise _unknown_model(name)
    if pretrained and not os.path.isfile(pretrained) and not open_clip.is_pretrained_cfg(arch, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(f"unknown pretrained tag {pretrained!r} for {arch!r}; valid: {', '.join(tags) or '(none)'}"
                         " (or a checkpoint file path, or None for random weights)")
    # Random weights are seeded, so a stand-in model is the same on every load and its caches are reused.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, **kw)
    tokenizer = open_clip.get_tokenizer(arch, context_length=getattr(module, "context_length", None))
    model = OpenClipAdapter(module, name, preprocess=preprocess, tokenizer=tokenizer)
    model.weights = pretrained
    return model


def _load_toy(name: str, profile: str, trained: bool = True) -> ResidualModel:
    """The toy CLIP of a training profile: trained (training it first if needed) or seeded random weights."""
    from .adapters.open_clip import OpenClipAdapter

    if trained:
        from .toy.model import load_toy_clip

        module, preprocess, tokenizer = load_toy_clip(profile)
    else:
        from .toy.model import create, preprocess_of, tokenizer_of

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = create(profile).eval()
        preprocess, tokenizer = preprocess_of(module), tokenizer_of(profile)
    model = OpenClipAdapter(module, name, preprocess=preprocess, tokenizer=tokenizer)
    model.weights = f"toy:{profile}" if trained else None
    return model
