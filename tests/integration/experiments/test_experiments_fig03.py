"""Figure 3 as an experiment: its parameters, the caches it declares, and its run on the smoke model."""

import pytest
from experiment_smoke import cell_defaults, planner_jobs_agree, smoke_params

from residual_lib.store.cache import CacheKey
from residual_lib.experiments import ParamsError, fig03
from residual_lib.reproduce.plan import STANDIN

PAGE = "fig03_textspan_vs_omp"


def test_params_defaults_are_the_notebooks_parameters_cell():
    assert fig03.Params().to_dict() == cell_defaults(PAGE)


@pytest.mark.parametrize("values, named", [
    ({"k": "abc"}, "k='abc'"),
    ({"k": 2.5}, "k=2.5"),
    ({"model_name": ["toy-clip"]}, "model_name=['toy-clip']"),
    ({"pc": 0}, "pc=0"),
    ({"last_layers": -1}, "last_layers=-1"),
    ({"dictionary": "imagenet"}, "dictionary='imagenet'"),
    ({"cache_dtype": "float64"}, "cache_dtype='float64'"),
    ({"probe_test_fraction": 1.0}, "probe_test_fraction=1.0"),
    ({"models": ["toy-clip"]}, "models"),
])
def test_bad_parameters_are_errors_that_name_them(values, named):
    with pytest.raises(ParamsError, match="fig03") as err:
        fig03.Params.from_dict(values)
    assert named in str(err.value)


def test_error_for_a_closed_choice_lists_the_valid_values():
    with pytest.raises(ParamsError, match="'toy', 'gandelsman-general'"):
        fig03.Params(dictionary="imagenet")


def test_caches_for_the_smoke_profile():
    p = smoke_params(PAGE)
    assert fig03.caches(p) == [CacheKey("toy-clip-smoke", "toy-mixed", "train", 150, 0, "float32")]


@pytest.mark.parametrize("profile, overrides", [("smoke", None), ("toy", None), ("paper", None), ("paper", STANDIN)])
def test_caches_are_the_planners_jobs(profile, overrides):
    assert planner_jobs_agree(PAGE, profile, overrides)


def test_figure_number_follows_the_principal_component():
    assert [fig03.figure_number(pc) for pc in (1, 2, 3)] == ["3", "8", "3 (PC3)"]


@pytest.mark.slow
def test_run_on_the_smoke_model(smoke_artifacts):
    p = smoke_params(PAGE)
    result = fig03.run(p)
    t = result.tables
    assert list(t["fig3_agreement"].columns) == ["figure", "pc", "layer", "head", "z"]
    assert list(t["fig3_descriptions"].columns) == ["figure", "layer", "head", "role", "method", "rank", "text"]
    assert list(t["descriptions"].columns) == ["head", "|Z|", "random sets' |Z| (95%)", "z_set", "rank", "TextSpan",
                                               "OMP1"]
    assert {"unit", "text_attribute", "probe_attribute", "agree"} <= set(t["probe_check"].columns)
    assert set(result.findings) == {"n_heads", "z_mean", "z_max", "z_max_head", "z_min_head", "z_min", "share_z1",
                                    "share_zset2", "paper_z_mean", "paper_share_z1", "pc", "probe_text",
                                    "readings", "figures_text", "z_random95_mean", "share_above_random"}
    f = result.findings
    assert f["n_heads"] == len(t["fig3_agreement"]) == p.last_layers * 2  # the smoke model has 2 heads a layer
    assert (t["fig3_agreement"].z >= 0).all() and f["z_min"] <= f["z_mean"] <= f["z_max"]
    assert f["z_random95_mean"] > 0 and "z_random95" in fig03.claim_tables(result)["agreement"]
    # each layer's most and least agreeing heads, k descriptions per method each
    assert set(t["fig3_descriptions"].groupby("method").size()) == {2 * p.last_layers * p.k}
    assert t["probe_skill"].index.tolist() == t["agreement"].unit.tolist()
    assert fig03.plot_agreement(result) is not None and fig03.plot_probe(result) is not None

    off = fig03.run(p.replace(probe_attributes=False, pc=2))
    assert "probe_check" not in off.tables and fig03.plot_probe(off) is None
    assert "no probe check" in off.findings["probe_text"]
    assert set(off.tables["fig3_agreement"].figure) == {"8"} and "OMP2" in off.tables["descriptions"]


@pytest.mark.slow  # loads the smoke model
def test_last_layers_beyond_the_model_is_an_error(smoke_artifacts):
    with pytest.raises(ParamsError, match="last_layers=99"):
        fig03.run(smoke_params(PAGE).replace(last_layers=99))


def test_the_page_says_which_of_figures_3_and_8_ran():
    from residual_lib.experiments import fig03

    assert fig03.figures_text(fig03.Params(extra_pcs=[])).startswith(
        "This build computed PC1 (Figure 3), not Figure 8 (PC2; parameter extra_pcs=[2])")
    assert fig03.figures_text(fig03.Params(extra_pcs=[2])).startswith("This build computed PC1 (Figure 3) and PC2 (Figure 8);")
