"""The toy world's generator, captions, dictionary and dataset loader."""

import numpy as np
import pytest

from residual_lib.data.datasets import load_dataset
from residual_lib.toy import world
from residual_lib.toy.captions import captions, consistent, value_captions
from residual_lib.toy.data import captioned_samples, generate
from residual_lib.toy.dictionary import text_dictionary


def _fixed(n: int, **values: int) -> dict[str, np.ndarray]:
    """Uniformly drawn attributes (seed 0) with some of them held at the given indices."""
    attributes = world.sample_attributes(n, np.random.default_rng(0))
    return {k: np.full(n, values[k]) if k in values else v for k, v in attributes.items()}


def _object_pixels(images: np.ndarray, attributes: dict[str, np.ndarray]) -> np.ndarray:
    """bool (N, S, S): pixels far (> 40 in some channel) from the image's background colour."""
    background = world.BACKGROUND_RGB[attributes["background"]][:, :, None, None]
    return (np.abs(images.astype(np.float32) - background) > 40).any(axis=1)


def test_generation_is_deterministic_under_a_seed():
    a_images, a_attrs = generate(300, [5, 0])
    b_images, b_attrs = generate(300, [5, 0])
    c_images, _ = generate(300, [6, 0])
    np.testing.assert_array_equal(a_images, b_images)
    for name in world.ATTRIBUTES:
        np.testing.assert_array_equal(a_attrs[name], b_attrs[name])
    assert not np.array_equal(a_images, c_images)
    assert a_images.dtype == np.uint8 and a_images.shape == (300, 3, world.IMAGE_SIZE, world.IMAGE_SIZE)


def test_object_mean_colour_lies_on_its_colours_ray():
    """On black, the object's mean RGB points along its colour's RGB (stripes keep the hue by design)."""
    attributes = _fixed(400, background=0, size=2)
    images = world.render(attributes, np.random.default_rng(1))
    inside = _object_pixels(images, attributes)
    mean = (images * inside[:, None]).sum(axis=(2, 3)) / inside.sum(axis=(1, 2))[:, None]
    directions = world.RGB / np.linalg.norm(world.RGB, axis=1, keepdims=True)
    nearest = np.argmax((mean / np.linalg.norm(mean, axis=1, keepdims=True)) @ directions.T, axis=1)
    np.testing.assert_array_equal(nearest, attributes["colour"])


def test_object_centroid_is_nearest_its_positions_centre():
    attributes = world.sample_attributes(600, np.random.default_rng(2))
    images = world.render(attributes, np.random.default_rng(3))
    inside = _object_pixels(images, attributes)
    rows, cols = np.indices(inside.shape[1:]) + 0.5
    centroid = np.stack([(inside * cols).sum((1, 2)), (inside * rows).sum((1, 2))], 1) / inside.sum((1, 2))[:, None]
    distance = np.linalg.norm(centroid[:, None] - world.CENTRES[None], axis=2)
    np.testing.assert_array_equal(distance.argmin(axis=1), attributes["position"])


def test_object_area_grows_with_size():
    """The same objects rendered small, medium and large cover strictly more pixels each time."""
    base = world.sample_attributes(200, np.random.default_rng(4))
    areas = []
    for size in range(len(world.SIZES)):
        attributes = {**base, "size": np.full(200, size)}
        images = world.render(attributes, np.random.default_rng(5))
        areas.append(_object_pixels(images, attributes).sum(axis=(1, 2)))
    assert (areas[0] < areas[1]).all() and (areas[1] < areas[2]).all()


def test_shapes_differ_in_the_same_place():
    """Every pair of shapes at the same centre and radius covers a different set of supersampled pixels."""
    x, y = np.meshgrid(np.linspace(-1.2, 1.2, 64), np.linspace(-1.2, 1.2, 64))
    n = len(world.SHAPES)
    masks = world.shape_masks(np.arange(n), np.broadcast_to(x, (n, 64, 64)), np.broadcast_to(y, (n, 64, 64)))
    for i in range(n):
        for j in range(i + 1, n):
            assert (masks[i] != masks[j]).mean() > 0.03, (world.SHAPES[i], world.SHAPES[j])


def test_render_rejects_unknown_variant():
    with pytest.raises(ValueError, match="valid: plain, sketch, textured"):
        world.render(_fixed(2), np.random.default_rng(0), variant="cartoon")


def test_captions_state_their_attributes_and_only_true_ones():
    attributes = world.sample_attributes(300, np.random.default_rng(6))
    texts, mentioned = captions(attributes, np.random.default_rng(7))
    for i, text in enumerate(texts):
        stated = [world.ATTRIBUTES[a][mentioned[a][i]] for a in world.ATTRIBUTES if mentioned[a][i] >= 0]
        assert stated, text
        for value in stated:
            assert value in text, (value, text)
        for a in world.ATTRIBUTES:
            assert mentioned[a][i] in (-1, attributes[a][i])
    ok = consistent(mentioned, attributes)
    assert ok.shape == (300, 300) and ok.diagonal().all()
    assert not ok.all()


def test_captions_state_the_requested_number_of_attributes():
    attributes = world.sample_attributes(500, np.random.default_rng(8))
    _, mentioned = captions(attributes, np.random.default_rng(9), n_stated=np.array([1.0, 0, 1.0, 0, 0, 0]))
    counts = sum((mentioned[a] >= 0).astype(int) for a in world.ATTRIBUTES)
    assert set(np.unique(counts)) == {1, 3}


def test_dictionary_is_large_unique_and_covers_every_value():
    entries = text_dictionary()
    assert len(entries) >= 300 and len(set(entries)) == len(entries)
    for values in world.ATTRIBUTES.values():
        for value in values:
            assert any(value in e for e in entries), value


def test_digits_are_sklearns_bundled_set_at_the_worlds_size():
    images, labels = world.digit_images()
    assert images.shape == (1797, 3, world.IMAGE_SIZE, world.IMAGE_SIZE) and images.dtype == np.uint8
    assert set(labels) == set(range(10))
    np.testing.assert_array_equal(images[:, 0], images[:, 1])


def test_task_datasets_label_their_attribute():
    data = load_dataset("toy-position", "val")
    assert len(data) == data.spec.splits["val"]["size"]
    np.testing.assert_array_equal(data.labels.numpy(), data.attributes["position"])
    assert set(data.labels.numpy()) == set(range(len(world.POSITIONS)))


def test_value_captions_state_each_value_alone():
    texts, mentioned = value_captions(np.random.default_rng(10), copies=2)
    n_values = sum(len(v) for v in world.ATTRIBUTES.values())
    assert len(texts) == 2 * n_values
    counts = sum((mentioned[a] >= 0).astype(int) for a in world.ATTRIBUTES)
    assert (counts == 1).all()
    for i, text in enumerate(texts):
        (a,) = [a for a in world.ATTRIBUTES if mentioned[a][i] >= 0]
        assert world.ATTRIBUTES[a][mentioned[a][i]] in text


def test_captioned_samples_pair_images_with_captions():
    images, texts = captioned_samples(5, seed=3)
    again, same = captioned_samples(5, seed=3)
    assert images.shape == (5, 3, world.IMAGE_SIZE, world.IMAGE_SIZE) and len(texts) == 5
    np.testing.assert_array_equal(images, again)
    assert texts == same


def test_noisy_variant_is_the_plain_image_under_heavy_noise():
    """Same draws: the noisy image is the plain one with its noise scaled up; the object's mean keeps its colour."""
    attributes = _fixed(300, background=1, pattern=0, size=2)  # gray: the noise is rarely clipped
    plain = world.render(attributes, np.random.default_rng(7))
    noisy = world.render(attributes, np.random.default_rng(7), variant="noisy")
    inside = _object_pixels(plain, attributes)
    difference = (noisy.astype(np.float32) - plain)[~np.broadcast_to(inside[:, None], plain.shape)]
    assert abs(difference.std() / (world.HEAVY_NOISE - world.PIXEL_NOISE) - 1) < 0.1
    mean = (noisy * inside[:, None]).sum(axis=(2, 3)) / inside.sum(axis=(1, 2))[:, None]
    nearest = np.linalg.norm(mean[:, None] - world.RGB[None], axis=2).argmin(axis=1)
    np.testing.assert_array_equal(nearest, attributes["colour"])


def test_bolder_sketch_lines_darken_more_pixels_and_the_default_is_the_sketch_variants():
    """Same draws: lines 3 and 5 pixels wide cover strictly more of each object than the sketch's 1.3, up to the
    silhouette; the default width is the sketch variant's own images, byte for byte."""
    attributes = _fixed(200, size=2)
    dark = [(world.render(attributes, np.random.default_rng(8), "sketch", outline=w) < 128).all(axis=1).sum((1, 2))
            for w in (world.OUTLINE, 3, 5, world.IMAGE_SIZE)]
    assert (dark[0] < dark[1]).all() and (dark[1] < dark[2]).all() and (dark[2] <= dark[3]).all()
    np.testing.assert_array_equal(world.render(attributes, np.random.default_rng(8), "sketch"),
                                  world.render(attributes, np.random.default_rng(8), "sketch", outline=world.OUTLINE))


def test_a_faint_texture_lies_between_the_texture_and_the_plain_background():
    """Same draws (texture and noise): away from the object, a texture at opacity t is t of the full texture plus
    (1 - t) of the plain background, so (faint - t full) / (1 - t) is the plain background under the usual noise."""
    attributes = _fixed(100, background=1, size=0, position=0)  # gray: the noise is rarely clipped
    full = world.render(attributes, np.random.default_rng(9), "textured").astype(np.float32)
    faint = world.render(attributes, np.random.default_rng(9), "textured", texture=0.3).astype(np.float32)
    corner = (slice(None), slice(None), slice(0, 6), slice(0, 6))  # far from the small centred object
    plain = (faint[corner] - 0.3 * full[corner]) / 0.7
    assert abs(plain.mean() - world.BACKGROUND_RGB[1, 0]) < 1.0 and plain.std() < 1.2 * world.PIXEL_NOISE
    assert full[corner].std() > 5 * world.PIXEL_NOISE


@pytest.mark.parametrize("name, variant, label, strength", [
    ("toy-textured-colour", "textured", "colour", {}), ("toy-noisy-shape", "noisy", "shape", {}),
    ("toy-noisy-colour", "noisy", "colour", {}), ("toy-sketch-size", "sketch", "size", {}),
    ("toy-textured-pattern", "textured", "pattern", {}), ("toy-sketch-3px", "sketch", "shape", {"outline": 3}),
    ("toy-sketch-5px-size", "sketch", "size", {"outline": 5}),
    ("toy-faint-textured-colour", "textured", "colour", {"texture": 0.3}),
    ("toy-faint-textured-pattern", "textured", "pattern", {"texture": 0.25})])
def test_alignment_task_datasets_label_the_attribute_they_render(name, variant, label, strength):
    """Labels are the rendered attribute, every class appears in near-equal numbers, the images are the manifest's
    rendering at its strength, and a reload is identical."""
    data = load_dataset(name, "val")
    assert data.spec.source == {"kind": "toy", "variant": variant, "label": label, **strength}
    np.testing.assert_array_equal(data.labels.numpy(), data.attributes[label])
    counts = np.bincount(data.labels.numpy(), minlength=data.spec.n_classes)
    assert len(counts) == len(world.ATTRIBUTES[label]) == data.spec.n_classes
    assert counts.min() > 0.6 * len(data) / len(counts) and counts.max() < 1.4 * len(data) / len(counts)
    assert list(data.spec.class_names) == list(world.ATTRIBUTES[label])
    pool, _ = generate(4500 + 500, [data.spec.seed, 0], variant, **strength)  # train and val share the pool
    assert any(np.array_equal(data.images[0].numpy(), image) for image in pool)
    again, _ = generate(len(data), [data.spec.seed, 0], variant, **strength)
    np.testing.assert_array_equal(generate(len(data), [data.spec.seed, 0], variant, **strength)[0], again)


@pytest.mark.parametrize("page", ["tab01_coarse_unit_alignment", "fig05_tab02_residual_alignment"])
def test_section4_toy_pages_ask_for_counts_every_task_holds(page):
    """Each task of the toy Section 4 pages is registered and has at least n_train / n_val / n_test images."""
    import yaml

    from residual_lib.data.datasets import dataset_spec
    from residual_lib.paths import REPO_ROOT

    params = yaml.safe_load((REPO_ROOT / "notebooks" / "params" / "toy" / f"{page}.yaml").read_text())
    assert len(params["datasets"]) == len(set(params["datasets"])) >= 4
    for name in params["datasets"]:
        splits = dataset_spec(name).splits
        for split in ("train", "val", "test"):
            assert params[f"n_{split}"] <= splits[split]["size"], (name, split)


def test_generated_pools_are_stored_reused_and_redrawn_when_damaged(monkeypatch, tmp_path):
    """Pages in separate processes share each drawn pool through artifacts/toy_images; a damaged file is drawn again."""
    from residual_lib.toy import data

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    data._generated.cache_clear()
    images, attributes = data._generated(50, 3, 1, "sketch")
    path = data.stored_pool_path(50, 3, 1, "sketch")
    assert path.is_file() and path.parent == tmp_path / "toy_images" and data.drawing_id() in path.name
    expected_images, expected_attributes = generate(50, [3, 1], "sketch")
    for got_images, got_attributes in (
            (images, attributes),
            _reloaded(data)):  # from the file, as another process reads it
        np.testing.assert_array_equal(got_images, expected_images)
        assert set(got_attributes) == set(world.ATTRIBUTES)
        for name in world.ATTRIBUTES:
            np.testing.assert_array_equal(got_attributes[name], expected_attributes[name])
    with monkeypatch.context() as m:
        m.setattr(data, "generate", lambda *a, **k: pytest.fail("drew a pool that is stored"))
        _reloaded(data)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the images' bytes
    path.write_bytes(bytes(raw))
    np.testing.assert_array_equal(_reloaded(data)[0], expected_images)
    assert path.read_bytes() != bytes(raw)  # drawn again and stored whole
    data._generated.cache_clear()


def _reloaded(data):
    data._generated.cache_clear()
    return data._generated(50, 3, 1, "sketch")
