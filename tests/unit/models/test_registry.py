"""Model factory: open_clip architecture names, registered manifests, clear errors."""

from __future__ import annotations


import pytest
import torch
from open_clip.transformer import QuickGELU

from residual_lib.models import registry as models
from residual_lib.models.open_clip import OpenClipAdapter
from unit_fixtures import TINY_CFG

torch.set_num_threads(1)


def test_open_clip_architecture_loads_random_init_wrapped():
    model = models.load_model("ViT-B-32", device="cpu", **TINY_CFG)
    assert isinstance(model, OpenClipAdapter)
    assert (model.n_layers, model.n_heads, model.d_head, model.embed_dim, model.image_size) == (3, 4, 16, 24, 32)
    assert model.device.type == "cpu" and model.weights is None and not model.module.training


def test_quickgelu_architecture_uses_quickgelu():
    model = models.load_model("ViT-B-32-quickgelu", device="cpu", **TINY_CFG)
    assert isinstance(model.module.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)


def test_unknown_model_names_valid_ones():
    with pytest.raises(KeyError, match=r"unknown model 'ViT-Q-99'.*ViT-B-32.*list_models"):
        models.load_model("ViT-Q-99")


def test_unknown_pretrained_tag_names_valid_tags():
    with pytest.raises(ValueError, match=r"unknown pretrained tag 'nope' for 'ViT-B-32'; valid: .*openai"):
        models.load_model("ViT-B-32", pretrained="nope")


def test_list_models_has_registered_then_open_clip_names():
    names = models.list_models()
    assert "ViT-B-32" in names and "ViT-L-14-quickgelu" in names
    assert names[:len(models._registry())] == list(models._registry())


def _register(monkeypatch, **entries):
    specs = {name: models.ModelSpec(**entry) for name, entry in entries.items()}
    monkeypatch.setattr(models, "_registry", lambda: specs)


def test_registered_open_clip_entry_applies_quick_gelu_and_false_means_random(monkeypatch):
    """pretrained=False builds the registered architecture with random weights (no download)."""
    _register(monkeypatch, **{"clip-b32": {"name": "clip-b32", "family": "open_clip", "arch": "ViT-B-32",
                                           "pretrained": "openai", "quick_gelu": True}})
    model = models.load_model("clip-b32", pretrained=False, device="cpu", **TINY_CFG)
    assert model.name == "clip-b32" and model.weights is None
    assert isinstance(model.module.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)


def test_toy_family_wraps_load_toy_clip(monkeypatch):
    """The toy family's registered loader calls load_toy_clip(profile) and wraps its open_clip model."""
    import open_clip

    import residual_lib.toy.checkpoint as toy_checkpoint

    calls = []

    def load_toy_clip(profile):
        calls.append(profile)
        module, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None, **TINY_CFG)
        return module, preprocess, open_clip.get_tokenizer("ViT-B-32", context_length=16)

    monkeypatch.setattr(toy_checkpoint, "load_toy_clip", load_toy_clip)
    _register(monkeypatch, **{"toy-clip": {"name": "toy-clip", "family": "toy", "arch": "toy-clip", "pretrained": "smoke"}})
    model = models.load_model("toy-clip", device="cpu")
    assert calls == ["smoke"] and isinstance(model, OpenClipAdapter) and model.weights == "toy:smoke"
    assert model.encode_text(["a red circle"]).shape == (1, 24)


def test_missing_family_adapter_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(models.LOADERS, "blip", "residual_lib.models.no_such_module:load")
    _register(monkeypatch, **{"blip-l": {"name": "blip-l", "family": "blip", "arch": "x"}})
    with pytest.raises(NotImplementedError, match="needs the 'blip' adapter"):
        models.load_model("blip-l", device="cpu")


def test_bad_manifest_family_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "x.yaml").write_text("name: x\nfamily: keras\narch: y\n")
    monkeypatch.setattr(models, "MANIFESTS", tmp_path)
    models._manifests.cache_clear()
    try:
        with pytest.raises(ValueError, match="x.yaml: field family: Input should be 'open_clip', 'toy', 'timm' or "
                                             "'blip' \\(got 'keras'\\)"):
            models.model_spec("x")
    finally:
        monkeypatch.undo()
        models._manifests.cache_clear()


def test_random_weights_are_the_same_on_every_load_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = models.load_model("ViT-S-32", device="cpu")
    b = models.load_model("ViT-S-32", device="cpu")
    assert torch.equal(torch.rand(1), expected_next)
    for (name, x), y in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        assert torch.equal(x, y), name


def test_toy_family_pretrained_false_is_random_and_needs_no_training(tmp_artifacts):
    model = models.load_model("toy-clip-smoke", pretrained=False, device="cpu")
    again = models.load_model("toy-clip-smoke", pretrained=False, device="cpu")
    assert model.weights is None and not (tmp_artifacts / "toy").exists()
    for x, y in zip(model.module.state_dict().values(), again.module.state_dict().values()):
        assert torch.equal(x, y)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    batch = torch.stack([model.preprocess(im) for im in images])
    assert model.encode_image(batch).shape == (2, model.embed_dim)


def test_model_specs_are_frozen_dataclasses_with_family_keys_kept():
    spec = models.model_spec("vit-l")
    assert spec.family == "timm" and spec.display == "ViT-L" and spec.text is False
    assert spec.extra["transformers_repo"] == "google/vit-large-patch16-224"
    assert spec.entry()["transformers_repo"] == spec.extra["transformers_repo"] and spec.entry()["name"] == "vit-l"
    with pytest.raises(Exception):
        spec.name = "other"
    with pytest.raises(KeyError, match="unknown model 'vit-x'"):
        models.model_spec("vit-x")


def test_offline_pretrained_weights_are_a_clear_error_without_a_request(tmp_artifacts, monkeypatch):
    """RESIDUAL_OFFLINE=1 and no weights under the artifacts folder: the error names the model, the weights, the
    folder and what to do; the hub is never asked (a socket connection would fail the test differently)."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(models.ModelUnavailableError, match="model 'clip-b' needs its pretrained weights 'openai'") as err:
        models.load_model("clip-b", device="cpu")
    assert str(tmp_artifacts / "models") in str(err.value) and "RESIDUAL_OFFLINE" in str(err.value)


def test_text_embeddings_are_stored_per_text_tower_and_read_back(tmp_artifacts, monkeypatch):
    """Pages in separate processes embed the same dictionary: the second reads the first's embeddings, keyed by the
    text weights and the texts; with gradients (training) nothing is stored or read."""
    from unit_fixtures import tiny_model

    model = tiny_model()
    texts = ["a red circle", "a blue square"]
    with torch.no_grad():
        first = model.encode_text(texts)
        stored = list((tmp_artifacts / "text").rglob("*.pt"))
        assert len(stored) == 1
        again = tiny_model()  # a new process's model: same weights, nothing cached in memory
        monkeypatch.setattr(again.module, "encode_text", lambda *a, **k: pytest.fail("stored texts encoded again"))
        assert torch.equal(again.encode_text(texts), first)
        other = tiny_model(seed=1)  # other text weights: their own embeddings
        assert not torch.equal(other.encode_text(texts), first)
        assert len(list((tmp_artifacts / "text").rglob("*.pt"))) == 2
    with_grad = model.encode_text(texts)
    assert with_grad.requires_grad and len(list((tmp_artifacts / "text").rglob("*.pt"))) == 2
