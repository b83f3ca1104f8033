"""The Table 1 experiment: parameter validation, the caches it reads, its tables and findings on the smoke profile."""

import shutil

import matplotlib
import pandas as pd
import pytest

from residual_lib.experiments import ParamsError, page_params, section4, tab01
from residual_lib.paths import REPO_ROOT
from residual_lib.report.plots_spectral import model_display
from experiment_smoke import declared_defaults, notebook_parameters

NOTEBOOK = "tab01_coarse_unit_alignment"


def test_params_defaults_are_the_notebooks_parameters_cell():
    assert tab01.Params().to_dict() == declared_defaults(REPO_ROOT / "notebooks" / f"{NOTEBOOK}.py")


@pytest.mark.parametrize("values, named", [
    ({"models": "toy-clip"}, "models='toy-clip'"),  # a string where a list is expected
    ({"n_train": "abc"}, "n_train='abc'"),
    ({"n_test": 0}, "n_test=0"),
    ({"fraction": 1.5}, "fraction=1.5"),
    ({"fractions": [0.1, 2.0]}, "fractions=[0.1, 2.0]"),
    ({"cache_dtype": "int8"}, "cache_dtype='int8'"),
    ({"datasets": []}, "datasets"),
])
def test_bad_values_are_errors_naming_the_parameter(values, named):
    with pytest.raises(ParamsError, match="tab01") as err:
        tab01.Params(**values)
    assert named in str(err.value)


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ParamsError, match="unknown parameter.*methods.*valid: models, datasets"):
        tab01.Params.from_dict({"methods": ["RD"]})


def test_smoke_profile_parameters_validate():
    p = page_params(NOTEBOOK, notebook_parameters(NOTEBOOK, "smoke"))
    assert p.models == ["toy-clip-smoke"] and p.fractions == [0.0, 0.25, 0.5] and p.n_random == 3


def test_caches_are_each_tasks_splits():
    p = page_params(NOTEBOOK, notebook_parameters(NOTEBOOK, "smoke"))
    keys = tab01.caches(p)
    # the toy tasks declare train, val and test: three caches per task, with the page's sizes
    assert [(k.model, k.dataset, k.split, k.n) for k in keys] == [
        ("toy-clip-smoke", d, s, n) for d in ["toy-colour", "toy-shape"] for s, n in
        [("train", 200), ("val", 80), ("test", 100)]] + [
        # the real network's own task and counts (scikit-learn digits declares no val: carved from train)
        ("standin-dino", "sklearn-digits", "train", 120), ("standin-dino", "sklearn-digits", "test", 60)]
    assert {(k.seed, k.dtype) for k in keys} == {(0, "float32")}


def test_with_average_appends_the_mean_row():
    table = pd.DataFrame({"dataset": ["a", "b"], "U": [0.2, 0.4], "k": [1, 3]})
    out = tab01.with_average(table)
    assert list(out.columns) == ["dataset", "U", "k"] and list(out["dataset"]) == ["a", "b", "Average"]
    assert out["U"].iloc[-1] == pytest.approx(0.3) and out["k"].iloc[-1] == pytest.approx(2)


def test_ours_minus_paper_only_for_the_papers_models():
    paper = pd.DataFrame({"model": ["CLIP-L", "CLIP-L"], "dataset": ["MNIST", "SVHN"], "method": ["U", "U"],
                          "accuracy": [0.5, 0.6]})
    ours = pd.DataFrame({"model": ["CLIP-L", "toy"], "dataset": ["MNIST", "MNIST"], "method": ["U", "U"],
                         "accuracy": [0.75, 0.1]})
    out = tab01.ours_minus_paper(ours, paper)
    assert out.to_dict("records") == [{"model": "CLIP-L", "dataset": "MNIST", "method": "U", "ours": 0.75,
                                       "paper": 0.5, "ours - paper": 0.25}]


def test_kept_summary_ranks_each_rules_heads_by_the_probe():
    probe = pd.DataFrame({"head": ["L0.H0", "L0.H1", "L1.H0", "L1.H1"], "accuracy": [0.9, 0.4, 0.7, 0.3],
                          "chance": 0.25, "rank": [1, 3, 2, 4], "kept_by": ["", "U|T", "S", "U|T, S"],
                          "model": "toy", "dataset": "d"})
    out = tab01.kept_summary(probe).iloc[0]
    assert out["probe's best head"] == "L0.H0" and out["its probe accuracy"] == 0.9
    assert out["U|T keeps"] == "L0.H1, L1.H1" and out["U|T: probe rank"] == 3
    assert out["U|T: probe accuracy"] == pytest.approx(0.35)
    assert out["S keeps"] == "L1.H0, L1.H1" and out["S: probe rank"] == 2


@pytest.mark.slow
def test_stored_results_are_keyed_by_the_toy_weights(tmp_artifacts, smoke_model_artifacts):
    """A retrained toy CLIP must not be served the results of its previous weights."""
    p = tab01.Params(models=["toy-clip-smoke"])
    before = tab01.train_key(p, "toy-clip-smoke", "toy-colour")
    assert before["weights"] is None  # not trained yet: nothing can be stored for it
    (tmp_artifacts / "toy").mkdir()  # the session's training, as if it had run here
    shutil.copytree(smoke_model_artifacts / "toy" / "smoke", tmp_artifacts / "toy" / "smoke")
    after = tab01.train_key(p, "toy-clip-smoke", "toy-colour")
    manifest = (tmp_artifacts / "toy" / "smoke" / "manifest.json").read_text()
    assert after["weights"] and after["weights"] in manifest
    assert tab01.train_key(p, "ViT-B-32", "toy-colour")["weights"] is None  # weights fixed by name and tag


@pytest.mark.slow
def test_run_on_the_smoke_profile(smoke_artifacts):
    matplotlib.use("Agg")
    p = page_params(NOTEBOOK, notebook_parameters(NOTEBOOK, "smoke"))
    result = tab01.run(p)
    table1 = result.tables["table1"]
    assert list(table1.columns) == ["model", "dataset", "method", "accuracy"]
    # two toy tasks and the stand-in DINO's one (class-mean), O the mean over two seeds
    assert len(table1) == 3 * len(tab01.METHODS) and table1["accuracy"].between(0, 1).all()
    seeds = result.tables["table1_seeds"]
    assert set(seeds["seed"]) == {0, 1} and len(seeds) == 2 * len(table1)
    o = seeds[seeds["method"] == "O"].groupby(["model", "dataset"])["accuracy"].mean()
    assert result.tables["ours"].set_index(["model", "dataset"])["O"].to_dict() == pytest.approx(o.to_dict())
    assert set(result.findings) == {"shared_models", "avg_b", "avg_h", "avg_o", "avg_u", "avg_ut", "avg_s", "avg_r",
                                    "n_o_beats_b", "n_rows", "h_share_of_b", "heads_text", "k_text",
                                    "readings", "n_tasks", "ut_top3", "s_top3", "s_top1", "n_s_beats_r",
                                    "n_ut_beats_r", "mean_best_probe", "classifier_text", "n_seeds",
                                    "n_o_flagged", "n_o_runs"}
    assert result.findings["n_rows"] == 3 and result.findings["shared_models"] == "none"
    assert "class-mean, k=2" in result.findings["classifier_text"] and result.findings["n_seeds"] == 2
    assert result.findings["avg_b"] == pytest.approx(table1.loc[table1["method"] == "B", "accuracy"].mean())
    (caption, table), (real_caption, real) = tab01.model_tables(result).items()
    assert caption.startswith(model_display("toy-clip-smoke") + ": ") and "zero-shot (text)" in caption
    assert "class-mean, k=2" in real_caption and list(real["dataset"]) == ["sklearn-digits", "Average"]
    assert {"chance", "O sd"} <= set(table.columns)
    assert list(table["dataset"]) == ["toy-colour", "toy-shape", "Average"]
    assert set(result.tables["sweep"]["k"]) >= {1}
    assert list(tab01.paper_table(result).columns) == ["model", "dataset", *tab01.METHODS]
    assert tab01.difference_tables(result) == {}
    probe, kept = result.tables["probe"], result.tables["kept"]
    # smoke: 2 x 2 heads on two tasks, the stand-in DINO's 12 x 3 on one
    assert len(probe) == 2 * 4 + 36 and probe.groupby("dataset")["rank"].min().eq(1).all()
    assert (kept["S keeps"] != "").all() and (kept["S: probe rank"] >= 1).all()
    assert result.findings["n_tasks"] == 3 and 0 <= result.findings["s_top1"] <= result.findings["s_top3"] <= 3
    # O's health per task and seed, carried into the ledger's rows: a flagged O is left out, the rest stay healthy
    training = result.tables["training"]
    assert len(training) == 3 * 2 and set(training["method"]) == {"O"} and result.findings["n_o_runs"] == 6
    assert result.findings["n_o_flagged"] == int((~training["healthy"]).sum())
    assert {"lr", "epoch kept", "cap hit", "flags", "remedy"} <= set(training.columns)
    accuracy = tab01.claim_tables(result)["accuracy"]
    assert {"n", "chance", "seed", "classifier", "healthy"} <= set(accuracy) and set(accuracy["n"]) == {100, 60}
    o_rows = accuracy[accuracy["method"] == "O"].merge(training, on=["model", "dataset", "seed", "method"],
                                                       suffixes=("", " (training)"))
    assert len(o_rows) == 6 and (o_rows["healthy"] == o_rows["healthy (training)"]).all()
    assert accuracy.loc[accuracy["method"] != "O", "healthy"].all()
    assert set(section4.training_health(result)["healthy"]) <= {"yes", "FLAGGED"}
    assert len(tab01.plot_averages(result).axes) == 2
    assert len([ax for ax in tab01.plot_sweep(result).axes if ax.axison]) == 3
