"""Toy manifests' sources: the shift's strength they may set, how it is described, and examples spread over classes."""

import numpy as np
import pytest

from residual_lib.data.datasets import dataset_spec
from residual_lib.toy import data

# The partial shifts of the toy Section 4 tasks: manifest -> (variant, label, strength).
PARTIAL_SHIFTS = {
    "toy-sketch-3px": ("sketch", "shape", (("outline", 3),)),
    "toy-sketch-5px-size": ("sketch", "size", (("outline", 5),)),
    "toy-faint-textured-colour": ("textured", "colour", (("texture", 0.3),)),
    "toy-faint-textured-pattern": ("textured", "pattern", (("texture", 0.25),)),
}


@pytest.mark.parametrize("name", sorted(PARTIAL_SHIFTS))
def test_partial_shift_manifests_declare_their_rendering_and_strength(name):
    spec = dataset_spec(name)
    assert data._check(spec.source) == PARTIAL_SHIFTS[name]
    assert spec.role == "task" and spec.n_classes == len(data.world.ATTRIBUTES[PARTIAL_SHIFTS[name][1]])
    assert {s: spec.splits[s]["size"] for s in ("train", "val", "test")} == {"train": 4500, "val": 500, "test": 2000}


def test_partial_shift_manifests_draw_from_seeds_no_other_toy_manifest_uses():
    """A manifest's seed picks its images: two manifests with one seed and one rendering would share their images."""
    from residual_lib.data.datasets import list_datasets

    seeds = [dataset_spec(n).seed for n in list_datasets() if dataset_spec(n).source["kind"] == "toy"]
    assert all(seeds.count(dataset_spec(name).seed) == 1 for name in PARTIAL_SHIFTS)


@pytest.mark.parametrize("source, message", [
    ({"variant": "textured", "label": "colour", "outline": 3}, "field 'outline' sets the sketch variant's shift, not "
                                                               "variant 'textured'"),
    ({"variant": "sketch", "label": "shape", "outline": 0}, r"outline 0 is not a number in \(0, 32\]"),
    ({"variant": "textured", "label": "shape", "texture": 1.5}, r"texture 1.5 is not a number in \(0, 1\]"),
    ({"variant": "textured", "label": "shape", "texture": "faint"}, r"texture 'faint' is not a number"),
    ({"variant": "sketch", "label": "shape", "outlines": 3}, "unknown field.* outlines; valid: kind, variant, label, "
                                                             "outline, texture"),
])
def test_a_bad_strength_is_refused_naming_the_field_and_the_valid_values(source, message):
    with pytest.raises(ValueError, match=message):
        data._check({"kind": "toy", **source})


def test_rendering_text_states_the_shift_and_its_strength():
    assert data.rendering_text({"variant": "sketch", "outline": 3}) == "dark outline on white, lines 3 px wide"
    assert data.rendering_text({"variant": "sketch"}) == "dark outline on white, lines 1.3 px wide"
    assert data.rendering_text({"variant": "textured", "texture": 0.3}) == (
        "random coloured texture behind the object at 30% opacity")
    assert data.rendering_text({"variant": "digits"}) == "scikit-learn's handwritten digits, upsampled to 32 px"


def test_examples_take_each_class_in_turn():
    labels = np.array([2, 0, 2, 1, 0, 0, 2, 1])
    picked = data.spread_over_classes(labels, 5)
    np.testing.assert_array_equal(picked, [1, 3, 0, 4, 7])  # the first 0, 1, 2, then the second 0 and 1
    np.testing.assert_array_equal(labels[data.spread_over_classes(labels, 8)], [0, 1, 2, 0, 1, 2, 0, 2])
