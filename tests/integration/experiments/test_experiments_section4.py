"""What the two Section 4 pages share: real networks' own tasks and counts, the spread over seeds, the classifier
sentence; and the `real` profile's parameter files for both pages."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from residual_lib.experiments import fig05_tab02, section4, tab01
from residual_lib.paths import REPO_ROOT


def test_a_real_network_reads_its_own_tasks_and_counts_and_the_toy_model_keeps_its_own():
    p = tab01.Params(real_models=["dinov2-s"], real_datasets=["fashion-mnist"], real_n_train=40, n_train=500)
    assert section4.model_params(p, "toy-clip", tab01.REAL_FIELDS) is p
    real = section4.model_params(p, "dinov2-s", tab01.REAL_FIELDS)
    assert (real.datasets, real.n_train, real.n_test) == (["fashion-mnist"], 40, p.real_n_test)
    assert tab01.training_pairs(p) == [*[("toy-clip", d) for d in p.datasets], ("dinov2-s", "fashion-mnist")]


def test_seed_spread_gives_mean_sd_min_max_per_group_and_zero_sd_for_one_seed():
    table = pd.DataFrame({"m": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0], "accuracy": [0.5, 0.7, 0.6, 0.9]})
    out = section4.seed_spread(table, ["m"]).set_index("m")
    assert out.loc["a", "mean"] == pytest.approx(0.6) and out.loc["a", "sd"] == pytest.approx(0.1)
    assert (out.loc["a", "min"], out.loc["a", "max"], out.loc["a", "seeds"]) == (0.5, 0.7, 3)
    assert out.loc["b", "sd"] == 0.0 and out.loc["b", "seeds"] == 1
    assert section4.mean_sd_text(0.6, 0.1, 3) == "0.600 ± 0.100" and section4.mean_sd_text(0.9, 0.0, 1) == "0.900"


def test_classifier_text_names_k_and_base_accuracy_of_class_mean_models_only():
    rows = [("DINOv2-S", "Fashion-MNIST", s, "Base", a, 0.1, "class-mean, k=10") for s, a in [(0, 0.7), (1, 0.7)]]
    rows += [("toy CLIP", "toy-colour", 0, "Base", 0.9, 0.125, "zero-shot (text)")]
    table = pd.DataFrame(rows, columns=["model", "dataset", "seed", "method", "accuracy", "chance", "classifier"])
    text = section4.classifier_text(table, "Base")
    assert text.startswith("DINOv2-S has no text tower: its classifier is class-mean, k=10")
    assert "Fashion-MNIST 0.700 (chance 0.10)" in text and "toy CLIP" not in text
    assert "text tower and a zero-shot" in section4.classifier_text(table.iloc[2:], "Base")


@pytest.mark.parametrize("module, page", [(tab01, "tab01_coarse_unit_alignment"),
                                          (fig05_tab02, "fig05_tab02_residual_alignment")])
def test_real_profile_files_are_valid_params_with_both_real_networks(module, page):
    values = yaml.safe_load(Path(REPO_ROOT / "notebooks" / "params" / "real" / f"{page}.yaml").read_text())
    p = module.Params.from_dict(values)
    assert p.real_models[0] == "dinov2-s" and p.real_models[1].startswith("clip-b16-image") and len(p.seeds) >= 3
    toy = module.Params.from_dict(yaml.safe_load(Path(REPO_ROOT / "notebooks" / "params" / "toy" / f"{page}.yaml").read_text()))
    assert (p.datasets, p.n_train, p.n_test) == (toy.datasets, toy.n_train, toy.n_test), \
        "the toy CLIP keeps the toy profile's tasks (the notebook's defaults hold tasks at chance)"
    assert {"fashion-mnist", "sklearn-digits"} <= set(p.real_datasets)
    assert len([d for d in p.real_datasets if d.startswith("toy-")]) >= 2
    if module is fig05_tab02:
        assert p.real_finetune and p.real_reference_dataset == "fashion-mnist"
