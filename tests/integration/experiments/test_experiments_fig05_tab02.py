"""The Figure 5 / Table 2 experiment: parameter validation, its caches, the table helpers, a smoke-profile run."""

import matplotlib
import pandas as pd
import pytest

from residual_lib.experiments import ParamsError, fig05_tab02, page_params, section4
from residual_lib.paths import REPO_ROOT
from residual_lib.report.plots_spectral import dataset_display, model_display
from experiment_smoke import declared_defaults, notebook_parameters

NOTEBOOK = "fig05_tab02_residual_alignment"


def smoke() -> fig05_tab02.Params:
    return page_params(NOTEBOOK, notebook_parameters(NOTEBOOK, "smoke"))


def test_params_defaults_are_the_notebooks_parameters_cell():
    assert fig05_tab02.Params().to_dict() == declared_defaults(REPO_ROOT / "notebooks" / f"{NOTEBOOK}.py")


@pytest.mark.parametrize("values, named", [
    ({"models": "toy-clip"}, "models='toy-clip'"),  # a string where a list is expected
    ({"n_train": "abc"}, "n_train='abc'"),
    ({"methods": ["RD", "Lin2"]}, "methods=['RD', 'Lin2'] is not a list of one of 'Lin', 'RD', 'RD*', 'RDY'"),
    ({"methods": ["Lin", "RDY"]}, "methods=['Lin', 'RDY'] must include 'RD'"),
    ({"finetune_lr": -1.0}, "finetune_lr=-1.0"),
    ({"rd_star_variance": 0.0}, "rd_star_variance=0.0"),
    ({"finetune": "yes"}, "finetune='yes'"),
])
def test_bad_values_are_errors_naming_the_parameter(values, named):
    with pytest.raises(ParamsError, match="fig05_tab02") as err:
        fig05_tab02.Params(**values)
    assert named in str(err.value)


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ParamsError, match="unknown parameter.*fraction.*valid: models, datasets"):
        fig05_tab02.Params.from_dict({"fraction": 0.05})


def test_caches_are_the_reference_and_each_tasks_splits():
    keys = fig05_tab02.caches(smoke())
    assert [(k.model, k.dataset, k.split, k.n) for k in keys] == [("toy-clip-smoke", "toy-mixed", "train", 300)] + [
        ("toy-clip-smoke", d, s, n) for d in ["toy-colour", "toy-shape"] for s, n in
        [("train", 200), ("val", 80), ("test", 100)]] + [
        # the real network's own reference, task and counts; its reference is its task's train cache: one key
        ("standin-dino", "sklearn-digits", "train", 120), ("standin-dino", "sklearn-digits", "test", 60)]
    # two models: the reference cache for each, never a key twice
    two = fig05_tab02.caches(smoke().replace(models=["a", "b"], datasets=["toy-shape", "toy-shape"], real_models=[]))
    assert len(two) == len(set(two)) == 2 * 4


def test_real_networks_train_their_own_tasks_and_finetune_only_where_listed():
    p = smoke().replace(real_finetune=["standin-dino/sklearn-digits"], seeds=[3, 4])
    assert fig05_tab02.training_pairs(p) == [("toy-clip-smoke", "toy-colour"), ("toy-clip-smoke", "toy-shape"),
                                             ("standin-dino", "sklearn-digits")]
    assert [fig05_tab02.finetunes(p, "standin-dino", "sklearn-digits", s) for s in (3, 4)] == [True, False]
    assert fig05_tab02.finetunes(p.replace(finetune_every_seed=True), "standin-dino", "sklearn-digits", 4)
    assert not fig05_tab02.finetunes(p.replace(real_finetune=[]), "standin-dino", "sklearn-digits", 3)
    keys = fig05_tab02.train_keys(p, "standin-dino", "sklearn-digits")
    assert [k["train seed"] for k in keys] == [3, 4] and keys[0]["n_train"] == 120 and keys[0]["n_test"] == 60
    assert keys[0]["reference_dataset"] == "sklearn-digits" and "real_n_train" not in keys[0]
    with pytest.raises(ParamsError, match="valid: standin-dino/sklearn-digits"):
        p.replace(real_finetune=["standin-dino/toy-colour"])
    with pytest.raises(ParamsError, match="in both models and real_models"):
        p.replace(real_models=["toy-clip-smoke"])
    with pytest.raises(ParamsError, match="distinct training seeds"):
        p.replace(seeds=[1, 1])


def test_with_counts_formats_accuracy_average_and_params():
    wide = pd.DataFrame({"Lin": [0.5, 1.0], "RD": [0.25, float("nan")]}, index=["a", "b"])
    shown = fig05_tab02.with_counts(wide, {"Lin": 65792})
    assert shown.to_dict("index") == {"a": {"Lin": "0.500", "RD": "0.250"}, "b": {"Lin": "1.000", "RD": ""},
                                      "Average": {"Lin": "0.750", "RD": "0.250"},
                                      "#params": {"Lin": "65,792", "RD": ""}}
    own = fig05_tab02.with_counts(wide.fillna(0), {"RD": 3}, add_average=False, decimals=2)
    assert list(own.index) == ["a", "b", "#params"] and own.loc["b", "RD"] == "0.00"


def test_params_table_takes_the_median_over_tasks():
    class M:
        def __init__(self, n):
            self.n_params = n

    def out(n):
        return {"RD*": fig05_tab02.Trained(M(n), None, 0.5)}

    trained = {("m", "a"): out(10), ("m", "b"): out(30), ("m", "c"): out(12), ("o", "a"): out(7)}
    table = fig05_tab02.params_table(trained, ["RD*"])
    assert table.to_dict("records") == [{"model": "m", "method": "RD*", "params": 12},
                                        {"model": "o", "method": "RD*", "params": 7}]


def test_gap_table_keeps_tasks_with_room_and_scales_each_method_between_base_and_full():
    rows = [("a", "Base", 0.2), ("a", "Full finetuning", 0.8), ("a", "RD", 0.5), ("a", "Lin", 0.1),
            ("b", "Base", 0.9), ("b", "Full finetuning", 1.0), ("b", "RD", 1.0), ("b", "Lin", 0.9)]
    accuracy = pd.DataFrame([{"model": "m", "dataset": d, "method": k, "accuracy": a} for d, k, a in rows])
    gap = fig05_tab02.gap_table(accuracy, ["Lin", "RD"])
    assert list(gap["dataset"]) == ["a"]  # b's gap (10 points) leaves no room
    assert gap.loc[0, "gap"] == pytest.approx(0.6) and gap.loc[0, "RD"] == pytest.approx(0.5)
    assert gap.loc[0, "Lin"] == pytest.approx(-1 / 6)


def test_beyond_full_names_each_task_where_a_method_beat_full_finetuning():
    gap = pd.DataFrame({"model": ["m", "m", "m"], "dataset": ["a", "b", "c"], "gap": [0.3, 0.4, 0.5],
                        "Lin": [1.2, 0.5, 1.0], "RD": [1.1, 0.9, 0.7]})
    assert fig05_tab02.beyond_full(gap, ["Lin", "RD"]) == "a (Lin, RD)"  # c's Lin equals Full: not beyond
    assert fig05_tab02.beyond_full(gap.iloc[1:], ["Lin", "RD"]) == "none"
    two = pd.concat([gap, gap.assign(model="o", RD=[0.1, 1.5, 0.1])])
    assert fig05_tab02.beyond_full(two, ["RD"]) == "m a (RD); o b (RD)"


@pytest.mark.slow
def test_run_on_the_smoke_profile(smoke_artifacts):
    matplotlib.use("Agg")
    result = fig05_tab02.run(smoke())
    table2 = result.tables["table2"]
    assert list(table2.columns) == ["model", "dataset", "method", "accuracy"]
    assert set(table2["method"]) == {"Lin", "RD", "RD*", "RDY"} and len(table2) == 3 * 4  # means over seeds
    assert table2["accuracy"].between(0, 1).all()
    per_seed = result.tables["accuracy"]
    assert set(per_seed["seed"]) == {0, 1} and (per_seed.loc[per_seed["method"] != "Base", "params"] > 0).all()
    spread = result.tables["spread"].set_index(["model", "dataset", "method"])
    assert spread["seeds"].max() == 2 and spread.loc[(model_display("toy-clip-smoke"), "toy-colour",
                                                       "Full finetuning"), "seeds"] == 1  # first seed only
    assert set(result.tables["accuracy"]["method"]) == {"Base", "Lin", "RD", "RD*", "RDY", "Full finetuning"}
    assert list(result.tables["table2_params"].columns) == ["model", "method", "params"]
    assert set(result.findings) == {
        "shared_models", "untrained_tasks", "probe_task", "probe_moved", "probe_top", "scale_top", "mean_rho_moved",
        "avg_base", "avg_lin", "avg_rd", "avg_rdstar", "avg_rdy", "avg_ft", "first_label", "rd_params",
        "rdstar_params", "lin_params", "readings", "described_tasks", "ft_text", "n_gap_tasks", "gap_tasks",
        "gap_rd", "gap_lin", "gap_rdstar", "gap_rdy", "n_rd_beats_lin", "n_rd_half", "beyond_full", "finetune_epochs",
        "classifier_text", "n_seeds", "finetune_seeds"}
    assert "class-mean, k=2" in result.findings["classifier_text"] and result.findings["n_seeds"] == 2
    assert result.findings["n_gap_tasks"] == len(result.tables["gap"])
    assert result.findings["finetune_epochs"] == smoke().finetune_max_epochs
    label = model_display("toy-clip-smoke")
    assert result.findings["probe_task"] == "toy-colour" and result.findings["first_label"] == label
    params = result.tables["table2_params"].query("model == @label").set_index("method")["params"]
    assert result.findings["rd_params"] == params["RD"] and result.findings["lin_params"] == params["Lin"]
    assert list(result.tables["probe"]["task"]) == ["toy-colour", "toy-shape"]
    (caption, table), (real_caption, real) = fig05_tab02.table2_tables(result).items()
    assert caption.startswith(label) and "zero-shot (text)" in caption and "2 training seeds" in caption
    assert list(table["dataset"]) == ["toy-colour", "toy-shape", "Average", "#params"]
    assert list(table.columns) == ["dataset", "Base", "Lin", "RD", "RD*", "RDY", "Full finetuning"]
    assert " ± " in table.loc[0, "RD"] and " ± " not in table.loc[0, "Full finetuning"]
    assert "class-mean, k=2" in real_caption and list(real["dataset"]) == ["sklearn-digits", "Average", "#params"]
    assert real.loc[0, "Full finetuning"] == ""  # not listed in real_finetune
    assert list(fig05_tab02.paper_table(result).columns) == ["model", "dataset", "Lin", "RD", "RD*", "RDY"]
    assert fig05_tab02.difference_tables(result) == {}
    health = section4.training_health(result)
    assert set(health["model"]) == {label, model_display("standin-dino")} and set(health["seed"]) == {0, 1}
    assert set(health["healthy"]) <= {"yes", "FLAGGED"}
    assert {"lr position in range test", "epoch kept", "cap hit", "scale min", "scale max", "remedy"} <= set(health)
    accuracy = fig05_tab02.claim_tables(result)["accuracy"]
    assert {"n", "chance", "healthy", "seed", "classifier"} <= set(accuracy)
    assert set(accuracy["n"]) == {result.params.n_test, result.params.real_n_test}
    assert list(fig05_tab02.table2_panels(result))[2:] == ["Tables 2 and 6 (paper)"]  # after the two models
    assert len(result.tables["count_check"]) == 4 * 3
    for plot in (fig05_tab02.plot_bars, fig05_tab02.plot_lr_range, fig05_tab02.plot_head_scales,
                 fig05_tab02.plot_probe):
        assert plot(result) is not None
    probe_rd = result.artifacts["trained"][(label, dataset_display(result.params.probe_dataset))]["RD"]
    # The per-PC map is drawn only when RD's run on the probe task is healthy (else the page says why).
    assert (fig05_tab02.plot_pc_scales(result) is None) == (not probe_rd.extra["health"]["healthy"])
