"""Appendix A.2 as an experiment: its parameters, the caches it declares, and its run on the smoke model."""

import pytest
from experiment_smoke import cell_defaults, planner_jobs_agree, smoke_params

from residual_lib.store.cache import CacheKey
from residual_lib.experiments import ParamsError, appA2
from residual_lib.reproduce.plan import STANDIN

PAGE = "appA2_textspan_equals_somp"


def test_params_defaults_are_the_notebooks_parameters_cell():
    assert appA2.Params().to_dict() == cell_defaults(PAGE)


@pytest.mark.parametrize("values, named", [
    ({"k": "10"}, "k='10'"),
    ({"k": 0}, "k=0"),
    ({"n": 1.5}, "n=1.5"),
    ({"dataset": ["toy-mixed"]}, "dataset=['toy-mixed']"),
    ({"tolerance": -1e-5}, "tolerance=-1e-05"),
    ({"dictionary": "toys"}, "dictionary='toys'"),
    ({"pc": 1}, "pc"),
])
def test_bad_parameters_are_errors_that_name_them(values, named):
    with pytest.raises(ParamsError, match="appA2") as err:
        appA2.Params.from_dict(values)
    assert named in str(err.value)


def test_caches_for_the_smoke_profile():
    p = smoke_params(PAGE)
    assert appA2.caches(p) == [CacheKey("toy-clip-smoke", "toy-mixed", "train", 150, 0, "float32")]


@pytest.mark.parametrize("profile, overrides", [("smoke", None), ("toy", None), ("paper", None), ("paper", STANDIN)])
def test_caches_are_the_planners_jobs(profile, overrides):
    assert planner_jobs_agree(PAGE, profile, overrides)


@pytest.mark.slow
def test_run_on_the_smoke_model(smoke_artifacts):
    p = smoke_params(PAGE)
    result = appA2.run(p)
    heads = result.tables["heads"]
    assert list(heads.columns) == ["dictionary", "unit", "same_atoms", "max_residual_diff", "residual_norm",
                                   "l1_same_atoms", "l1_first_departure", "l1_overlap"]
    assert list(result.tables["summary"].columns) == ["measure", appA2.RAW, appA2.PROJECTED]
    assert set(result.findings) == {"n_heads", "k", "equal_text", "max_diff", "within_tol", "tolerance",
                                    "l1_same_raw", "l1_same_proj", "l1_first_median", "l1_overlap", "l1_first_same",
                                    "readings"}
    f = result.findings
    # the theorem: TextSpan and L2 SOMP agree on every head of the smoke model, with both dictionaries
    assert f["equal_text"] == "every head, with both dictionaries" and f["within_tol"] == "within"
    assert f["max_diff"] < p.tolerance and f["n_heads"] == len(heads) // 2 == 4
    assert heads.l1_overlap.between(0, p.k).all() and 0 <= f["l1_first_same"] <= 1
    raw = appA2.per_head(result)
    assert len(raw) == f["n_heads"] and raw.max_residual_diff.str.match(r"\d\.\de[-+]\d+$").all()
    assert appA2.plot(result) is not None
