"""The results interface (save/load in the paper's long format) and the paper-vs-ours comparison."""

import pandas as pd
import pytest

from residual_lib.report import results
from residual_lib.paper.reference import REFERENCES, reference


@pytest.fixture(autouse=True)
def artifacts(monkeypatch, tmp_path):
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv(results.RUN_ENV, "paper")
    return tmp_path


def test_save_and_load_round_trip_under_the_run(artifacts):
    df = reference("table2_params").head(3)
    path = results.save(df, "table2_params")
    assert path == artifacts / "results" / "paper" / "table2_params.csv"
    assert results.load("table2_params").equals(df.reset_index(drop=True))
    assert results.load("table2_params", run="toy") is None


def test_save_replaces_rows_with_the_same_keys_and_keeps_others():
    first = pd.DataFrame({"model": ["CLIP-L", "CLIP-B"], "method": ["RD", "RD"], "params": [1, 2]})
    results.save(first, "table2_params")
    results.save(pd.DataFrame({"model": ["CLIP-L"], "method": ["RD"], "params": [43008]}), "table2_params")
    got = results.load("table2_params").set_index("model")["params"].to_dict()
    assert got == {"CLIP-B": 2, "CLIP-L": 43008}


def test_save_refuses_columns_unlike_the_papers():
    with pytest.raises(ValueError, match="accuracy"):
        results.save(pd.DataFrame({"model": ["CLIP-L"], "dataset": ["MNIST"], "method": ["RD"]}), "table2")


@pytest.mark.parametrize("name", list(results.KEYS))
def test_the_papers_own_numbers_all_match(name):
    comp = results.compare(name, reference(name))
    assert set(comp["verdict"]) == {"match"}
    assert len(comp) == len(reference(name)) * len(results.TOLERANCES[name])


@pytest.mark.parametrize("name", list(results.KEYS))
def test_nothing_saved_means_every_number_is_not_run(name):
    assert set(results.compare(name, None)["verdict"]) == {"not run"}


def test_verdicts_follow_the_stated_tolerance():
    ours = reference("table2").copy()
    ours.loc[0, "accuracy"] += 0.029   # inside 0.03
    ours.loc[1, "accuracy"] -= 0.031   # outside
    ours = ours.drop(index=2)          # not run
    comp = results.compare("table2", ours)
    assert list(comp["verdict"][:3]) == ["match", "differs", "not run"]
    assert comp["diff"][1] == pytest.approx(-0.031)


def test_exact_parameter_counts_match_the_printed_abbreviations():
    """RD counts 24*16*64 + 24*768 = 43,008 and 12*12*64 + 12*512 = 15,360 match the printed 43k and 15.4k."""
    ours = pd.DataFrame({"model": ["CLIP-L", "CLIP-B", "BLIP-L"], "method": ["RD", "RD", "RD"],
                         "params": [43008, 15360, 30720]})
    comp = results.compare("table2_params", ours).dropna(subset=["ours"])
    assert set(comp["verdict"]) == {"match"} and len(comp) == 3


def test_text_comparison_ignores_case_and_reports_differences():
    ours = reference("fig4_order").copy()
    ours["dataset"] = ours["dataset"].str.upper()
    ours.loc[0, "dataset"] = "SOMETHING ELSE"
    comp = results.compare("fig4_order", ours)
    assert comp["verdict"].value_counts().to_dict() == {"match": len(ours) - 1, "differs": 1}


def test_summary_counts_every_verdict():
    comps = {name: results.compare(name, None) for name in ("table1", "fig9")}
    table = results.summary(comps).set_index("reference")
    assert table.loc["table1", "not run"] == len(reference("table1"))
    assert table.loc["fig9", "paper numbers"] == 25


def test_every_paper_reference_has_a_comparison():
    assert set(results.KEYS) == set(REFERENCES)


def test_plot_agreement_draws_one_panel_per_quantity_both_have_with_a_band_around_every_point():
    import matplotlib
    matplotlib.use("Agg")
    ours = reference("table2").assign(accuracy=lambda t: t["accuracy"] + 0.01)
    comps = {"table2": results.compare("table2", ours), "fig9": results.compare("fig9", None),
             "fig4_order": results.compare("fig4_order", None)}
    fig = results.plot_agreement(comps)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["table2: accuracy"], "fig9 has the paper's values alone: no panel"
    band, points = fig.axes[0].collections
    x, y = band.get_paths()[0].vertices.T
    assert x.min() <= ours["accuracy"].min() - 0.01 and x.max() >= ours["accuracy"].max()
    assert y.max() == pytest.approx(0.03), "the band is the tolerance around a difference of 0"
    assert list(points.get_offsets()[:, 1]) == pytest.approx([0.01] * len(ours)), "each point is ours - paper"
    assert results.plot_agreement({"fig9": results.compare("fig9", None)}) is None


def test_dataset_order_joins_on_model_and_rank_whatever_the_figure_label():
    ours = reference("fig4_order").assign(figure="ours")
    assert set(results.compare("fig4_order", ours)["verdict"]) == {"match"}


def formula_counts() -> pd.DataFrame:
    """An independent oracle: Lin = e*e + e (with bias), RD = layers*heads*d_head + layers*e (every head PC and
    every MLP PC), RDY = e; ViT-L-14: 24 layers, 16 heads of 64, e = 768; ViT-B-32: 12, 12 of 64, e = 512."""
    rows = []
    for model, (layers, heads, e) in {"CLIP-L": (24, 16, 768), "OpenCLIP-L": (24, 16, 768),
                                      "CLIP-B": (12, 12, 512), "OpenCLIP-B": (12, 12, 512)}.items():
        rows += [{"model": model, "method": "Lin", "params": e * e + e},
                 {"model": model, "method": "RD", "params": layers * heads * 64 + layers * e},
                 {"model": model, "method": "RDY", "params": e}]
    return pd.DataFrame(rows)


def test_architecture_params_are_computed_from_the_configs_and_match_the_paper():
    ours = results.architecture_params()
    expected = formula_counts()
    assert ours.sort_values(["model", "method"]).reset_index(drop=True).equals(
        expected.sort_values(["model", "method"]).reset_index(drop=True))
    comp = results.compare("table2_params", ours).dropna(subset=["ours"])
    assert len(comp) == 12 and set(comp["verdict"]) == {"match"}


def test_a_build_without_runs_produced_nothing_and_says_so():
    s = results.run_summary("toy", architecture=formula_counts())
    assert (s.produced, s.compared, s.matched, s.models, s.paper_models) == (0, 0, 0, [], [])
    assert s.paper_numbers == sum(len(results.compare(n, None)) for n in results.KEYS)
    assert (s.architecture_compared, s.architecture_matched) == (12, 12)
    text = s.text()
    assert "ran none of the paper's models" in text and "saved no values" in text
    assert "12 of 12 match the paper's within 2%" in text
    assert str(s.paper_numbers) not in text, "the paper's total is not a count of what this build rebuilt"


def test_a_toy_run_counts_its_own_values_and_none_as_compared():
    toy = pd.DataFrame({"model": "toy CLIP", "layer": [0, 1, 2], "linear_id": [3.0, 4, 5], "twonn_id": [2.0, 2, 2],
                        "ratio": [1.5, 2, 2.5], "evr1": [0.5, 0.4, 0.3]})
    results.save(toy, "fig2", run="toy")
    results.save(pd.DataFrame({"model": "toy CLIP", "dataset": "shape", "method": ["RD", "Lin", "RDY"],
                               "accuracy": [0.9, 0.8, None]}), "table2", run="toy")
    s = results.run_summary("toy", architecture=formula_counts())
    assert (s.produced, s.compared, s.models, s.paper_models) == (14, 0, ["toy CLIP"], [])
    assert "Of the 14 values it saved" in s.text() and "toy CLIP, which the paper did not study" in s.text()


def test_a_run_of_a_paper_model_counts_what_it_compared():
    results.save(reference("table2").head(4), "table2", run="paper")
    ours = reference("table2_params").head(2).assign(params=lambda d: d["params"] * 2)
    results.save(ours, "table2_params", run="paper")
    s = results.run_summary("paper", architecture=formula_counts())
    assert (s.produced, s.compared, s.matched, s.paper_models) == (6, 6, 4, ["BLIP-L"])
    assert "ran BLIP-L of the paper's models and saved 6 values; 6 of the paper's" in s.text()


def test_comparisons_add_architecture_counts_and_a_runs_own_counts_take_precedence():
    results.save(pd.DataFrame({"model": ["CLIP-L"], "method": ["RD"], "params": [99]}), "table2_params", run="x")
    comps = results.comparisons("x", architecture=formula_counts())
    assert set(comps) == set(results.KEYS)
    params = comps["table2_params"].set_index(["model", "method"])
    assert params.loc[("CLIP-L", "RD"), "verdict"] == "differs"
    assert params.loc[("CLIP-L", "Lin"), "verdict"] == "match"
    assert params.loc[("BLIP-L", "RD"), "verdict"] == "not run"
    table = results.summary(comps).set_index("reference")
    assert table.loc["table2_params", "compared"] == 12
    assert table.loc["table2_params", "match"] == 11 and table.loc["table1", "compared"] == 0
