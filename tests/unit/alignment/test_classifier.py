"""Zero-shot classifier: template averaging, renormalisation, accuracy of embeddings and unit sums."""

import numpy as np
import pytest
import torch

from residual_lib.alignment.classifier import Classifier, accuracy, unit_sum
from unitset_factory import random_unitset


def _lookup_encoder(table: dict[str, np.ndarray]):
    return lambda texts: torch.tensor(np.stack([table[t] for t in texts]), dtype=torch.float32)


def test_class_embedding_is_renormalised_mean_of_normalised_templates():
    """Oracle: the recipe written out in numpy for every class."""
    rng = np.random.default_rng(0)
    classes, templates = ["cat", "dog", "red car"], ["a {}.", "a photo of a {}.", "{}!"]
    table = {t.format(c): rng.normal(size=8) * rng.uniform(0.1, 10) for c in classes for t in templates}
    clf = Classifier.from_texts(_lookup_encoder(table), classes, templates, batch_size=2)
    for i, c in enumerate(classes):
        vs = np.stack([table[t.format(c)] for t in templates])
        mean = (vs / np.linalg.norm(vs, axis=1, keepdims=True)).mean(axis=0)
        np.testing.assert_allclose(clf.weights[i].numpy(), mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(clf.weights.norm(dim=1).numpy(), 1.0, atol=1e-6)


def test_templates_are_averaged_after_normalisation():
    """A template with a huge raw norm must not dominate the class embedding."""
    table = {"a x": np.array([1000.0, 0.0]), "b x": np.array([0.0, 1.0])}
    clf = Classifier.from_texts(_lookup_encoder(table), ["x"], ["a {}", "b {}"])
    np.testing.assert_allclose(clf.weights[0].numpy(), np.array([1.0, 1.0]) / np.sqrt(2), atol=1e-6)


def test_bad_template_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="no placeholder"):
        Classifier.from_texts(_lookup_encoder({}), ["x"], ["no placeholder"])


def test_accuracy_is_scale_invariant_and_matches_argmax():
    units, clf = random_unitset()
    feats = units.embedding
    expected = np.mean(np.argmax(feats @ clf.weights.numpy().T / np.linalg.norm(feats, axis=1, keepdims=True), 1)
                       == units.labels)
    assert clf.accuracy(feats, units.labels) == pytest.approx(expected)
    assert clf.accuracy(7.5 * feats, units.labels) == pytest.approx(expected)


def test_sum_of_all_units_is_the_embedding():
    units, clf = random_unitset()
    np.testing.assert_allclose(unit_sum(units, units.units), units.embedding, atol=1e-4)
    assert accuracy(units, clf, units.units) == accuracy(units, clf)
    assert accuracy(units, clf, ["L1.H2"]) > accuracy(units, clf, ["L0.H0"])


def test_open_clip_text_tower_and_tokenizer():
    """Any open_clip tokenizer + text tower: a tiny random-initialised CLIP, checked against the recipe by hand."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=16),
                 text_cfg=CLIPTextCfg(context_length=12, vocab_size=49408, width=32, heads=2, layers=1)).eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=12)
    encode = lambda texts: model.encode_text(tokenizer(texts))  # noqa: E731
    classes, templates = ["circle", "square"], ["a {}.", "a drawing of a {}."]
    clf = Classifier.from_texts(encode, classes, templates)
    with torch.no_grad():
        for i, c in enumerate(classes):
            e = torch.nn.functional.normalize(encode([t.format(c) for t in templates]), dim=-1).mean(0)
            np.testing.assert_allclose(clf.weights[i].numpy(), (e / e.norm()).numpy(), atol=1e-5)


def test_for_dataset_uses_the_manifest_and_needs_a_text_tower():
    """Class names and templates come from the dataset manifest; a model without text is refused by name."""
    from residual_lib.data.datasets import dataset_spec

    class FakeModel:
        name, has_text = "fake", True

        def __init__(self):
            self.seen: list[str] = []

        def encode_text(self, texts):
            self.seen += texts
            return torch.randn(len(texts), 4, generator=torch.Generator().manual_seed(len(self.seen)))

    spec = dataset_spec("toy-colour")
    model = FakeModel()
    clf = Classifier.for_dataset(model, "toy-colour")
    assert clf.class_names == spec.class_names and clf.weights.shape == (spec.n_classes, 4)
    assert model.seen == [t.format(c) for c in spec.class_names for t in spec.templates]
    model.has_text = False
    with pytest.raises(ValueError, match="'fake' has no text tower"):
        Classifier.for_dataset(model, "toy-colour")


def test_logit_scale_taken_from_the_model():
    """The authors' classifier multiplies by the model's exp(logit_scale); a CLIP whose log-scale is log(37) gives 37."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from residual_lib.models.open_clip import OpenClipAdapter
    from residual_lib.alignment.classifier import model_logit_scale

    torch.manual_seed(0)
    module = CLIP(embed_dim=8, vision_cfg=CLIPVisionCfg(layers=1, width=16, head_width=8, patch_size=8, image_size=16),
                  text_cfg=CLIPTextCfg(context_length=12, vocab_size=100, width=16, heads=2, layers=1))
    with torch.no_grad():
        module.logit_scale.fill_(np.log(37.0))
    model = OpenClipAdapter(module, "tiny-clip")
    assert model_logit_scale(model) == pytest.approx(37.0, rel=1e-6)

    class FakeModel:
        name, has_text, module = "fake", True, torch.nn.Linear(2, 2)

        def encode_text(self, texts):
            return torch.randn(len(texts), 4, generator=torch.Generator().manual_seed(len(texts)))

    model.encode_text = FakeModel().encode_text  # the toy dataset's prompts, any text encoder
    assert Classifier.for_dataset(model, "toy-colour", logit_scale="model").logit_scale == pytest.approx(37.0)
    assert Classifier.for_dataset(model, "toy-colour").logit_scale == 100.0
    with pytest.raises(ValueError, match="'fake' carries no logit_scale"):
        Classifier.for_dataset(FakeModel(), "toy-colour", logit_scale="model")


def test_class_mean_classifier_is_the_nearest_class_mean():
    """Oracle: nearest class mean written out by hand (means of the normalised embeddings), on 3 classes in 2-D."""
    x = np.array([[2.0, 0.0], [0.0, 0.5], [3.0, 3.0], [1.0, 1.0], [-4.0, 0.0], [-1.0, -1.0]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    clf = Classifier.from_class_means(x, labels, ["a", "b", "c"])
    # class 0: mean of (1, 0) and (0, 1) is (0.5, 0.5); class 1: (1, 1)/sqrt 2 twice; class 2: (-1, 0) and -(1, 1)/sqrt 2
    s = 1 / np.sqrt(2)
    expected = np.array([[s, s], [s, s], [-(1 + s) / 2, -s / 2]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(clf.weights.numpy(), expected, atol=1e-6)
    assert clf.kind == "class-mean, k=2"
    queries = np.array([[5.0, 0.1], [-2.0, 0.3]])
    cosines = queries @ expected.T / np.linalg.norm(queries, axis=1, keepdims=True)
    assert list(clf.predict(queries)) == list(cosines.argmax(axis=1))


def test_class_mean_classifier_names_a_class_without_images():
    with pytest.raises(ValueError, match=r"\['c'\]"):
        Classifier.from_class_means(np.eye(2), np.array([0, 1]), ["a", "b", "c"])
