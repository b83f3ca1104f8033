"""The authors' prompts: clip-benchmark's package data and the authors' registry read with ast (offline)."""

import numpy as np
import pytest

from residual_lib.data import templates
from residual_lib.data.datasets import dataset_spec, list_datasets
from residual_lib.paths import artifacts_dir
from residual_lib.data.templates import AUTHORS_PROMPTS, AUTHORS_REGISTRY, prompts, registry_lists

PAPER_DATASETS = sorted(n for n in list_datasets() if dataset_spec(n).extra.get("paper_name")
                        and not n.startswith(("standin-", "random")))
SOURCE = '''
import torch
cifar100_classes = ["apple", "aquarium_fish"]
sun397_classes = ["abbey"] * 3
OPENAI_RESISC45_TEMPLATES = [lambda c: f"satellite imagery of {c}.", lambda c: f"a {c} {{seen}} from above"]
sketch_templates = [
    lambda c: f"a sketch of a {c}",  # a comment
]
mixed = ["a", 3]
not_a_list = "x"
'''


def test_registry_lists_by_hand():
    lists = registry_lists(SOURCE)
    assert lists["cifar100_classes"] == ["apple", "aquarium_fish"]
    assert lists["OPENAI_RESISC45_TEMPLATES"] == ["satellite imagery of {}.", "a {} {{seen}} from above"]
    assert lists["OPENAI_RESISC45_TEMPLATES"][1].format("farm") == "a farm {seen} from above"
    assert lists["sketch_templates"] == ["a sketch of a {}"]
    assert "mixed" not in lists and "not_a_list" not in lists


def test_every_paper_dataset_has_the_authors_prompts():
    assert PAPER_DATASETS and set(PAPER_DATASETS) == set(AUTHORS_PROMPTS)


@pytest.fixture
def fake_registry(monkeypatch):
    """The four lists read from the registry file, of the right lengths (the file needs the network)."""
    fake = {"cifar100_classes": [f"c{i}" for i in range(100)], "sun397_classes": [f"s{i}" for i in range(397)],
            "OPENAI_RESISC45_TEMPLATES": [f"t{i} {{}}." for i in range(18)],
            "sketch_templates": [f"k{i} {{}}" for i in range(5)]}
    monkeypatch.setattr(templates, "_registry", lambda: fake)
    return fake


@pytest.mark.parametrize("dataset", sorted(AUTHORS_PROMPTS))
def test_template_lookup_for_every_paper_dataset(dataset, fake_registry):
    class_names, prompt_set = prompts(dataset, "authors")
    assert len(class_names) == dataset_spec(dataset).n_classes
    assert prompt_set and all(t.count("{}") == 1 for t in prompt_set)
    assert prompts(dataset) == (dataset_spec(dataset).class_names, dataset_spec(dataset).templates)


def test_known_sets_from_the_package(fake_registry):
    """Counts and entries of the OpenAI sets as the authors used them (Radford et al. 2021)."""
    assert len(templates.authors_templates("cifar10")) == 18 and templates.authors_templates("cifar10")[0] == "a photo of a {}."
    assert templates.authors_templates("svhn") == templates.authors_templates("mnist") == ('a photo of the number: "{}".',)
    assert templates.authors_templates("gtsrb")[0] == "a zoomed in photo of a {} traffic sign."  # quotes removed
    assert templates.authors_templates("pacs") == templates.authors_templates("imagenet") and len(templates.authors_templates("pacs")) == 80
    assert templates.authors_class_names("imagenet")[:2] == ("tench", "goldfish")
    assert templates.authors_class_names("eurosat")[2] == "brushland or shrubland"  # HerbaceousVegetation, label 2
    assert templates.authors_class_names("cifar100")[1] == "c1" and len(templates.authors_templates("resisc45")) == 18
    assert len(templates.authors_templates("imagenet-sketch")) == 5
    with pytest.raises(ValueError, match="valid: manifest, authors"):
        prompts("cifar10", "openai")
    with pytest.raises(KeyError, match="paper datasets: "):
        prompts("toy-shape", "authors")


def test_the_downloaded_registry_when_present():
    """With the pinned file in the download folder (sha256-checked), its lists have the authors' sizes."""
    if not (artifacts_dir() / "downloads" / AUTHORS_REGISTRY.filename).exists():
        pytest.skip("the authors' registry file is not downloaded")
    templates._registry.cache_clear()
    assert len(templates.authors_templates("resisc45")) == 18 and len(templates.authors_templates("imagenet-sketch")) == 5
    names = templates.authors_class_names("cifar100")
    assert len(names) == 100 and names[1] == "aquarium_fish"
    assert np.sum(np.array(names) != np.array(dataset_spec("cifar100").class_names)) == 10


@pytest.mark.parametrize("standin,original", [("standin-cifar10", "cifar10"), ("standin-mnist", "mnist"),
                                               ("standin-imagenet", "imagenet")])
def test_standins_take_their_originals_templates_and_keep_their_class_names(standin, original):
    class_names, prompt_set = prompts(standin, "authors")
    assert class_names == dataset_spec(standin).class_names
    assert prompt_set == templates.authors_templates(original)
