"""Every manifest under data_manifests/ fits its schema; a broken one is named (file and field) and breaks no other."""

import shutil

import pytest

from residual_lib.data import datasets
from residual_lib.data.manifests import ManifestError, parse_manifest
from residual_lib.models import registry
from residual_lib.paths import MANIFESTS

SCHEMAS = {"datasets": datasets.DatasetManifest, "models": registry.ModelManifest}


def test_every_manifest_folder_has_a_schema():
    folders = {p.name for p in MANIFESTS.iterdir() if p.is_dir() and any(p.glob("*.yaml"))}
    assert folders == set(SCHEMAS), "a new folder of YAML manifests needs a schema here"


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_manifest_fits_its_schema(path):
    parse_manifest(path, SCHEMAS[path.parent.name])


@pytest.fixture
def manifests(tmp_path, monkeypatch):
    """A copy of data_manifests/ that the loaders read; returns a function that rewrites one dataset manifest."""
    shutil.copytree(MANIFESTS, tmp_path / "m")
    for module in (datasets, registry):
        monkeypatch.setattr(module, "MANIFESTS", tmp_path / "m")
    caches = (datasets._manifests, datasets._specs, registry._manifests)
    for cached in caches:
        cached.cache_clear()

    def edit(folder: str, name: str, old: str, new: str):
        path = tmp_path / "m" / folder / f"{name}.yaml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        for cached in caches:
            cached.cache_clear()
        return path

    yield edit
    for cached in caches:
        cached.cache_clear()


@pytest.mark.parametrize("old, new, field", [
    ("  train:\n    size: 4500", "  train:\n    size: big", "field splits.train.size: Input should be a valid integer"),
    ("seed: 101", "seed: abc", "field seed: Input should be a valid integer"),
    ("class_names:\n- circle\n- square\n- triangle\n- diamond\n- cross\n- star", "class_names: circle",
     "field class_names: Input should be a valid list"),
    ("templates:\n- a photo of a {}.", "templates: a photo of {}\nx:\n- a photo of a {}.",
     "field templates: Input should be a valid list"),
    ("source:\n  kind: toy\n  variant: plain\n  label: shape", "source: toy",
     "field source: Input should be a valid dictionary"),
    ("  kind: toy", "  kind: toys", "field source.kind: Input should be 'toy', 'torchvision'"),
    ("name: toy-shape", "name: toy-shape\n  : [", "is not valid YAML"),
])
def test_a_broken_dataset_manifest_is_named_and_breaks_no_other(manifests, old, new, field):
    """Issue 28 cases 6-9: `size: big`, `seed: abc`, `class_names: circle`, `templates: ...` as a string,
    `source: toy` and invalid YAML each gave an error naming neither file nor field (or none at all), and the
    last two broke loading every other dataset."""
    path = manifests("datasets", "toy-shape", old, new)
    with pytest.raises(ManifestError, match="manifest .*") as caught:
        datasets.load_dataset("toy-shape", "test")
    assert str(path) in str(caught.value) and field in str(caught.value)
    with pytest.warns(UserWarning, match="dataset manifest skipped: manifest .*toy-shape.yaml"):
        names = datasets.list_datasets()
    assert "toy-shape" not in names and "toy-colour" in names
    assert datasets.dataset_spec("toy-colour").n_classes == 8


def test_a_model_family_outside_the_loaders_is_named(manifests):
    path = manifests("models", "clip-b", "family: open_clip", "family: onnx-clip")
    with pytest.raises(ManifestError, match=f"{path}: field family: Input should be 'open_clip', 'toy'"):
        registry.model_spec("clip-b")
    with pytest.warns(UserWarning, match="model manifest skipped: .*clip-b.yaml"):
        assert registry.model_spec("clip-l").family == "open_clip"


def test_a_template_without_one_slot_is_refused(manifests):
    manifests("datasets", "toy-shape", "- the {}.", "- the thing.")
    with pytest.raises(ManifestError, match="field templates: .*exactly one {} .*'the thing.'"):
        datasets.dataset_spec("toy-shape")
