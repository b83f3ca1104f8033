"""Figure 4 as an experiment: its parameters, the caches it declares, and its run on the smoke model."""

import pytest
from experiment_smoke import cell_defaults, planner_jobs_agree, smoke_params

from residual_lib.store.cache import CacheKey
from residual_lib.experiments import ParamsError, fig04
from residual_lib.reproduce.plan import STANDIN

PAGE = "fig04_spectral_dataset_similarity"


def test_params_defaults_are_the_notebooks_parameters_cell():
    assert fig04.Params().to_dict() == cell_defaults(PAGE)


@pytest.mark.parametrize("values, named", [
    ({"models": "toy-clip"}, "models='toy-clip'"),
    ({"datasets": "toy-colour"}, "datasets='toy-colour'"),
    ({"datasets": []}, "datasets"),
    ({"n": "abc"}, "n='abc'"),
    ({"n_standout": 2.0}, "n_standout=2.0"),
    ({"somp_k": 0}, "somp_k=0"),
    ({"n_reference": -5}, "n_reference=-5"),
    ({"somp_aggregate": "l3"}, "somp_aggregate='l3'"),
    ({"evr_threshold": 1.5}, "evr_threshold=1.5"),
    ({"attribute_probe": "yes"}, "attribute_probe='yes'"),
    ({"probe_attributes": True}, "probe_attributes"),
])
def test_bad_parameters_are_errors_that_name_them(values, named):
    with pytest.raises(ParamsError, match="fig04") as err:
        fig04.Params.from_dict(values)
    assert named in str(err.value)


def test_caches_for_the_smoke_profile():
    p = smoke_params(PAGE)
    assert fig04.caches(p) == [CacheKey("toy-clip-smoke", "toy-mixed", "train", 120, 0, "float32")] + [
        CacheKey("toy-clip-smoke", d, "train", 100, 0, "float32") for d in ("toy-colour", "toy-sketch", "toy-noise")]


@pytest.mark.parametrize("profile, overrides", [("smoke", None), ("toy", None), ("paper", None), ("paper", STANDIN)])
def test_caches_are_the_planners_jobs(profile, overrides):
    assert planner_jobs_agree(PAGE, profile, overrides)


def test_a_split_no_larger_than_wanted_is_cached_whole():
    # toy-digits' train split has 1,293 images, toy-colour's 4,500
    p = fig04.Params(models=["a", "b"], datasets=["toy-digits", "toy-colour"], n=1293, n_reference=None)
    assert [(k.model, k.dataset, k.n) for k in fig04.caches(p)] == [
        ("a", "toy-mixed", None), ("a", "toy-digits", None), ("a", "toy-colour", 1293),
        ("b", "toy-mixed", None), ("b", "toy-digits", None), ("b", "toy-colour", 1293)]
    assert fig04.caches(p.replace(n=1292))[1].n == 1292


@pytest.mark.slow
def test_run_on_the_smoke_model(smoke_artifacts):
    p = smoke_params(PAGE)
    result = fig04.run(p)
    t = result.tables
    assert list(t["fig4_order"].columns) == ["figure", "model", "rank", "dataset"]
    assert sorted(t["fig4_order"].dataset) == ["toy-colour", "toy-noise", "toy-sketch"]
    # toy datasets are not the paper's: the orders compare by kind of dataset, not rank by rank
    assert list(t["order"].columns) == ["model", "compared_with", "kind", "this build", "position",
                                        "Fig 4a, OpenCLIP-L (paper)", "position (paper)"]
    assert "Random (13 of 13)" in t["order"].set_index("kind").loc["out-of-distribution sets",
                                                                  "Fig 4a, OpenCLIP-L (paper)"]
    assert list(t["standout"].columns) == ["unit", "layer", "head", "dataset", "similarity", "gap",
                                           "SOMP descriptions"]
    assert len(t["standout"]) == p.n_standout and t["standout"]["SOMP descriptions"].str.count(r" \| ").eq(
        p.somp_k - 1).all()
    assert t["standout_skill"].index.tolist() == t["standout"].unit.tolist()
    assert "fig9" not in t and result.artifacts["correlation"] is None  # one model
    assert set(result.findings) == {"first_model", "reference_name", "sim_first_layer", "sim_last_layer",
                                    "top_dataset", "top_sim", "bottom_dataset", "bottom_sim", "median_k",
                                    "role_text", "order_rho", "probe_text", "corr_text", "paper_corr_mean",
                                    "readings", "null_mean", "null_low", "null_draws", "n_below_null", "n_datasets",
                                    "above_null_text"}
    f = result.findings
    assert 0 <= f["bottom_sim"] <= f["top_sim"] <= 1 + 1e-9
    order = t["fig4_order"].dataset
    assert f["top_dataset"] == order.iloc[0] and f["bottom_dataset"] == order.iloc[-1]
    assert t["by_layer"].iloc[0, 1] == f["sim_first_layer"]
    assert fig04.plot_heatmaps(result) is not None
    # the sampling null: every head in every draw of two halves of the reference, beside the datasets by layer
    assert len(t["null"]) == p.null_draws * t["similarities"]["unit"].nunique()
    assert f["null_low"] < f["null_mean"] <= 1 and f["null_draws"] == p.null_draws
    assert {"sampling null", "null sd", "null low end"} <= set(t["by_layer"].columns)
    assert fig04.plot_by_layer(result) is not None
    assert set(fig04.claim_tables(result)) == {"similarity", "null"}
    assert fig04.plot_correlation(result) is None, "one model: no correlation of this build's to draw"
    assert fig04.paper_correlation(result).shape == (5, 5)
