"""The claim ledger: every claim's check on constructed tables for each verdict it can give, and the ledger."""

import numpy as np
import pandas as pd
import pytest

from residual_lib import claims
from residual_lib.claims import checks
from residual_lib.paper.reference import reference

HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE = claims.STATUSES


# --- constructed tables -----------------------------------------------------------------------------------

def layers(ratio, linear=None, twonn=None, evr1=None, model="m"):
    n = len(ratio)
    return pd.DataFrame({"model": model, "layer": range(n), "ratio": ratio,
                         "linear_id": linear if linear is not None else np.arange(n) * 4.0 + 10,
                         "twonn_id": twonn if twonn is not None else [10, 14, 18, 20, 18, 14, 10, 8][:n],
                         "evr1": evr1 if evr1 is not None else np.linspace(0.5, 0.1, n)})


RISING = np.linspace(1.2, 3.0, 8)


def agreement(z, pc=1):
    return pd.DataFrame({"unit": [f"L0.H{i}" for i in range(len(z))], "pc": pc, "z": z})


def probe(named, unnamed, agree):
    return pd.DataFrame({"unit": [f"L0.H{i}" for i in range(len(agree))], "agree": agree,
                         "named_skill": named, "unnamed_skill": unnamed})


def similarity(values, model="m", roles=None):
    """values: {dataset: (n_layers x n_heads) array of similarities}; roles: {dataset: role} (default "ood")."""
    rows = []
    for dataset, grid in values.items():
        for layer, row in enumerate(np.asarray(grid, dtype=float)):
            for head, s in enumerate(row):
                rows.append({"model": model, "dataset": dataset, "unit": f"L{layer}.H{head}", "layer": layer,
                             "head": head, "similarity": s, "role": (roles or {}).get(dataset, "ood")})
    return pd.DataFrame(rows)


def null(level=0.95, draws=5, sd=0.01, layers=6, model="m"):
    """The sampling null: `draws` draws of two halves of the reference, every head near `level` (sd over draws)."""
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"model": model, "unit": f"L{layer}.H{head}", "layer": layer, "draw": d,
                          "similarity": level + sd * shift} for d, shift in enumerate(rng.normal(size=draws))
                         for layer in range(layers) for head in range(4)])


def falling(offset=0.0, dip=None, layers=6):
    """`layers` x 4 heads falling with depth; dip=(layer, head) marks one head far below its layer."""
    grid = np.array([[1.0 - 0.1 * layer - offset] * 4 for layer in range(layers)])
    if dip is not None:
        grid[dip] -= 0.4
    return grid


def accuracy(means, model="m", datasets=("A", "B", "C"), n=1000, chance=0.1):
    """means: {method: accuracy on every dataset} (a list gives one value per dataset), each on n test images."""
    rows = []
    for method, value in means.items():
        values = value if isinstance(value, list) else [value] * len(datasets)
        rows += [{"model": model, "dataset": d, "method": method, "accuracy": v, "n": n, "chance": chance}
                 for d, v in zip(datasets, values)]
    return pd.DataFrame(rows)


def params(counts, model="m"):
    return pd.DataFrame([{"model": model, "method": m, "params": n} for m, n in counts.items()])


TAB1_GOOD = {"U": 0.7, "U|T": 0.72, "S": 0.73, "R": 0.3, "H": 0.66, "B": 0.72, "O": 0.85}
TAB2_GOOD = {"Base": 0.6, "Lin": 0.9, "RD": 0.91, "RD*": 0.9, "RDY": [0.9, 0.8, 0.88], "Full finetuning": 0.91}
WEAK_RISE = np.array([1, 3, 2, 6, 4, 5.0])  # Spearman 0.77 over 6 layers, permutation p 0.11: not significant
AT_CHANCE = {"B": 0.12, "Base": 0.12}  # the model itself within 10 points of chance (0.1) on every task
PARAMS_GOOD = {"Lin": 590_000, "RD": 43_000, "RD*": 14_000, "RDY": 768, "Full finetuning": 300_000_000}

# claim function -> {status: args}; every status a function can give, from tables built for it.
CASES = {
    checks.early_heads_near_linear: {HOLDS: (layers(RISING),), FAILS: (layers(np.full(8, 3.0)),),
                                     UNTESTABLE: (layers(RISING[:2]),)},
    checks.linear_id_rises: {HOLDS: (layers(RISING),), FAILS: (layers(RISING, linear=np.arange(8)[::-1] * 4.0),),
                             INCONCLUSIVE: (layers(RISING[:6], linear=WEAK_RISE),),
                             UNTESTABLE: (layers(RISING[:4], linear=[11.75, 10.25, 12.5, 12.0]),)},
    checks.nonlinearity_rises: {HOLDS: (layers(RISING),), FAILS: (layers(RISING[::-1]),),
                                INCONCLUSIVE: (layers(WEAK_RISE),), UNTESTABLE: (layers(RISING[:5]),)},
    checks.evr1_falls: {HOLDS: (layers(RISING),), FAILS: (layers(RISING, evr1=np.linspace(0.45, 0.59, 8)),),
                        INCONCLUSIVE: (layers(RISING[:6], evr1=-WEAK_RISE),), UNTESTABLE: (None,)},
    checks.heads_low_dimensional: {HOLDS: (layers(RISING).assign(d_head=64),),
                                   FAILS: (layers(RISING).assign(d_head=16),), UNTESTABLE: (layers(RISING),)},
    checks.twonn_hunchback: {HOLDS: (layers(RISING),), FAILS: (layers(RISING, twonn=np.arange(8) + 10.0),),
                             UNTESTABLE: (layers(RISING[:5]),)},
    checks.agreement_varies: {HOLDS: (agreement([0.2, 1.5, 4.9]),), FAILS: (agreement([1.2, 1.5, 2.1]),),
                              UNTESTABLE: (agreement([0.2, 4.9], pc=2),)},
    checks.textspan_omp_agree: {HOLDS: (agreement([0.5, 1.5, 2.0]),), FAILS: (agreement([0.1, 0.4, 1.2]),),
                                UNTESTABLE: (None,)},
    checks.descriptions_name_what_heads_encode: {
        HOLDS: (probe([0.8, 0.9], [0.3, 0.4], [True, True]),),
        FAILS: (probe([0.75, 0.75], [0.71, 0.71], [True, False]),), UNTESTABLE: (None,)},
    checks.heads_specialise: {HOLDS: (similarity({"A": falling(), "B": falling(0.2)}), null()),
                              FAILS: (similarity({"A": falling(), "B": falling(0.01)}), null()),
                              # a fresh sample of the reference against one other dataset: a shift, not content
                              UNTESTABLE: (similarity({"ref": falling(), "B": falling(0.2)}, roles={"ref": "task"}),
                                           null())},
    checks.similarity_falls_with_depth: {
        HOLDS: (similarity({"A": falling()}),), FAILS: (similarity({"A": falling()[::-1]}),),
        INCONCLUSIVE: (similarity({"A": 0.9 + 0.01 * WEAK_RISE[::-1, None] * np.ones((1, 4))}),),
        UNTESTABLE: (similarity({"A": falling(layers=4)}),)},
    checks.random_activates_unspecific_heads: {
        # with STANDOUT_N heads per dataset, the dip must rank first: every other head sits at its layer mean
        HOLDS: (similarity({"MNIST": falling(dip=(3, 1)), "Random": falling(dip=(3, 1))}),),
        FAILS: (similarity({"MNIST": falling(dip=(3, 1)),
                            "Random": falling(dip=(2, 0))}),),
        UNTESTABLE: (similarity({"MNIST": falling(), "SVHN": falling()}),)},
    checks.dataset_order_consistent: {
        HOLDS: (pd.concat([similarity({"A": falling(), "B": falling(0.1), "C": falling(0.3)}, model="x"),
                           similarity({"A": falling(), "B": falling(0.12), "C": falling(0.25)}, model="y")]),),
        FAILS: (pd.concat([similarity({"A": falling(), "B": falling(0.1), "C": falling(0.3)}, model="x"),
                           similarity({"A": falling(0.3), "B": falling(0.1), "C": falling()}, model="y")]),),
        UNTESTABLE: (similarity({"A": falling(), "B": falling(0.1), "C": falling(0.3)}, model="x"),)},
    # Section 4 (n = 1000 test images, chance 0.1): a mean over 3 tasks of a difference has a 95% half-width
    # of about 0.015, a single task's about 0.026.
    checks.selected_heads_near_base: {HOLDS: (accuracy(TAB1_GOOD),),
                                      FAILS: (accuracy({**TAB1_GOOD, "U|T": 0.6}),),
                                      INCONCLUSIVE: (accuracy({**TAB1_GOOD, "U|T": 0.69}),),
                                      UNTESTABLE: (accuracy({**TAB1_GOOD, **AT_CHANCE}),)},
    checks.heads_carry_alignment: {HOLDS: (accuracy(TAB1_GOOD),), FAILS: (accuracy({**TAB1_GOOD, "H": 0.5}),),
                                   INCONCLUSIVE: (accuracy({**TAB1_GOOD, "H": 0.62}),),
                                   UNTESTABLE: (accuracy({"B": 0.7}),)},
    checks.optimized_weights_best: {HOLDS: (accuracy(TAB1_GOOD),), FAILS: (accuracy({**TAB1_GOOD, "O": 0.6}),),
                                    INCONCLUSIVE: (accuracy({**TAB1_GOOD, "O": 0.745}),),
                                    UNTESTABLE: (accuracy(TAB1_GOOD).drop(columns=["n", "chance"]),)},
    checks.residual_improves_base: {HOLDS: (accuracy(TAB2_GOOD),), FAILS: (accuracy({**TAB2_GOOD, "RD": 0.62}),),
                                    INCONCLUSIVE: (accuracy({**TAB2_GOOD, "RD": 0.66}),),
                                    UNTESTABLE: (accuracy({**TAB2_GOOD, **AT_CHANCE}),)},
    checks.residual_near_lin: {HOLDS: (accuracy(TAB2_GOOD),),
                               FAILS: (accuracy({**TAB2_GOOD, "RD": [0.91, 0.91, 0.8]}),),
                               INCONCLUSIVE: (accuracy({**TAB2_GOOD, "RD": [0.91, 0.91, 0.87]}),),
                               UNTESTABLE: (accuracy({"RD": 0.9}),)},
    checks.lin_near_full: {HOLDS: (accuracy(TAB2_GOOD),), FAILS: (accuracy({**TAB2_GOOD, "Lin": 0.8}),),
                           INCONCLUSIVE: (accuracy({**TAB2_GOOD, "Lin": 0.89}),),
                           UNTESTABLE: (accuracy({k: v for k, v in TAB2_GOOD.items() if k != "Full finetuning"}),)},
    checks.residual_near_full_with_few_params: {
        HOLDS: (accuracy(TAB2_GOOD), params(PARAMS_GOOD)),
        FAILS: (accuracy(TAB2_GOOD), params({**PARAMS_GOOD, "RD": 5_000_000})),
        INCONCLUSIVE: (accuracy({**TAB2_GOOD, "RD": 0.89}), params(PARAMS_GOOD)),
        UNTESTABLE: (accuracy(TAB2_GOOD), params({k: v for k, v in PARAMS_GOOD.items() if k != "Full finetuning"}))},
    checks.rdstar_near_rd: {HOLDS: (accuracy(TAB2_GOOD), params(PARAMS_GOOD)),
                            FAILS: (accuracy({**TAB2_GOOD, "RD*": 0.85}), params(PARAMS_GOOD)),
                            INCONCLUSIVE: (accuracy({**TAB2_GOOD, "RD*": 0.89}), params(PARAMS_GOOD)),
                            UNTESTABLE: (accuracy(TAB2_GOOD), None)},
    checks.rdy_behind_rd: {HOLDS: (accuracy(TAB2_GOOD),), FAILS: (accuracy({**TAB2_GOOD, "RDY": 0.9}),),
                           INCONCLUSIVE: (accuracy({**TAB2_GOOD, "RDY": [0.9, 0.86, 0.9]}),),
                           UNTESTABLE: (accuracy({"RD": 0.9}),)},
    checks.textspan_equals_somp: {
        HOLDS: (pd.DataFrame({"unit": ["L0.H0", "L0.H1"], "identical_atoms": [True, True],
                              "max_residual_difference": [1e-12, 3e-9]}),),
        FAILS: (pd.DataFrame({"unit": ["L0.H0", "L0.H1"], "identical_atoms": [True, False],
                              "max_residual_difference": [1e-12, 3e-9]}),),
        UNTESTABLE: (pd.DataFrame(columns=["unit", "identical_atoms", "max_residual_difference"]),)},
}
# Criteria read with an interval or a p-value: each can be inconclusive; the others are exact or have no null.
WITH_UNCERTAINTY = {f for f, cases in CASES.items() if INCONCLUSIVE in cases}


def test_every_claim_has_cases_for_every_verdict():
    assert {c.check for c in claims.CLAIMS} == set(CASES)
    assert all(set(cases) == set(claims.STATUSES) - ({INCONCLUSIVE} if f not in WITH_UNCERTAINTY else set())
               for f, cases in CASES.items())
    assert len(WITH_UNCERTAINTY) == 13  # 3 depth trends, similarity with depth, 9 of Section 4


@pytest.mark.parametrize("status", claims.STATUSES)
@pytest.mark.parametrize("check", list(CASES), ids=lambda f: f.__name__)
def test_claim_gives_each_verdict_on_tables_built_for_it(check, status):
    if status not in CASES[check]:
        pytest.skip(f"{check.__name__} reads no interval, so it cannot be inconclusive")
    verdict = check(*CASES[check][status])
    assert verdict.status == status, verdict
    assert verdict.criterion
    if status == UNTESTABLE:
        assert verdict.reason and not verdict.numbers
    else:
        assert verdict.numbers and not verdict.reason


@pytest.mark.parametrize("check", list(CASES), ids=lambda f: f.__name__)
def test_every_tested_verdict_shows_its_interval_or_p_value_or_says_why_it_has_none(check):
    for status, args in CASES[check].items():
        if status == UNTESTABLE:
            continue
        v = check(*args)
        uncertain = "p" in v.numbers or any(" [" in str(x) for x in v.numbers.values())
        assert uncertain or v.caveat, (check.__name__, status, v)


def test_trend_criterion_is_stated_as_a_sentence_with_its_threshold_and_p_value():
    v = checks.nonlinearity_rises(layers(RISING))
    assert v.criterion == "Spearman(layer, L/N) > 0.5 with permutation p < 0.05"
    assert v.numbers["Spearman rho"] == pytest.approx(1.0)
    assert v.numbers["p"] < 1e-3  # of the 8! orderings of 8 layers only the identity (and its reverse) are as extreme
    assert v.numbers["L/N first layer"] == pytest.approx(1.2)


def test_a_depth_trend_over_the_toy_clips_four_layers_is_not_testable():
    """The issue's case: linear ID 11.75, 10.25, 12.50, 12.00 over 4 layers was "grows steadily: holds"."""
    v = checks.linear_id_rises(layers(RISING[:4], linear=[11.75, 10.25, 12.5, 12.0]))
    assert v.status == UNTESTABLE and v.reason == "needs at least 6 layers; this model has 4"


def test_a_first_layer_similarity_of_0738_is_not_almost_identical():
    """The issue's DINOv2-S case: similarity falls with depth, but the first layer's is 0.738."""
    grid = np.linspace(0.738, 0.3, 6)[:, None] * np.ones((1, 4))
    v = checks.similarity_falls_with_depth(similarity({"A": grid}))
    assert v.status == FAILS and v.numbers["first layer"] == pytest.approx(0.738)


def test_specialisation_is_not_met_by_a_distribution_shift_alone():
    """The issue's case: fresh images of the reference distribution at 0.98, other datasets at 0.77: the spread
    is the shift. Among the datasets that differ in content (0.78, 0.76) it is too small."""
    table = similarity({"toy-colour": falling(-0.2), "toy-sketch": falling(0.01), "toy-digits": falling(0.03)},
                       roles={"toy-colour": "task"})
    v = checks.heads_specialise(table, null())
    assert v.status == FAILS and "toy-colour" in v.caveat
    assert checks.heads_specialise(table.drop(columns="role"), null()).status == UNTESTABLE


def test_specialisation_counts_a_dataset_as_different_only_below_the_sampling_null():
    """Two content datasets 0.2 apart, both within what two halves of the reference give (0.3 to 0.9 across
    draws): their difference is sampling, not specialisation. Without a null (too few draws) it is not testable."""
    table = similarity({"A": falling(-0.4), "B": falling(-0.2)})  # means 0.95 and 0.75
    wide = null(level=0.6, sd=0.3)
    v = checks.heads_specialise(table, wide)
    assert v.status == FAILS and v.numbers["below the null"] == "none" and "low end" in v.numbers["sampling null"]
    assert checks.heads_specialise(table, null(level=0.99, sd=0.001)).status == HOLDS
    few = checks.heads_specialise(table, null(draws=checks.MIN_NULL_DRAWS - 1))
    assert few.status == UNTESTABLE and "4 draw(s)" in few.reason
    assert checks.heads_specialise(table, None).status == UNTESTABLE


def test_similarity_with_depth_shows_the_sampling_nulls_layers_beside_the_datasets():
    v = checks.similarity_falls_with_depth(similarity({"A": falling()}), null(level=0.97))
    assert v.numbers["sampling null first layer"] == pytest.approx(v.numbers["sampling null last layer"], abs=0.02)
    assert "sampling null first layer" not in checks.similarity_falls_with_depth(similarity({"A": falling()})).numbers


def test_order_consistency_gives_one_reason_for_one_model_and_for_two_models_on_different_datasets():
    """The Figure 4 page holds one model, the front page two on different datasets: the same reason, own counts."""
    one = checks.dataset_order_consistent(similarity({"a": falling(), "b": falling(0.1), "c": falling(0.2)}))
    apart = checks.dataset_order_consistent(pd.concat([
        similarity({"a": falling(), "b": falling(0.1), "c": falling(0.2)}, model="toy"),
        similarity({"d": falling(), "e": falling(0.1)}, model="real")]))
    assert (one.status, apart.status) == (UNTESTABLE, UNTESTABLE)
    assert one.reason.endswith("these tables have 1 model(s), no two sharing that many")
    assert apart.reason.endswith("these tables have 2 model(s), no two sharing that many")
    assert one.reason.split(";")[0] == apart.reason.split(";")[0]


def test_textspan_omp_agreement_shows_what_random_description_sets_reach():
    """The toy case: mean |Z| 2.2 passes the criterion's 1.0, but random sets reach 2.5 on the paper's scale."""
    table = agreement([2.0, 2.2, 2.4]).assign(z_random95=2.5)
    v = checks.textspan_omp_agree(table)
    assert v.status == HOLDS and v.numbers["share |Z| above random sets'"] == 0.0
    assert v.numbers["random sets' |Z| (95%, mean over heads)"] == 2.5 and "by chance" in v.caveat
    assert checks.textspan_omp_agree(table.assign(z_random95=0.5)).caveat == ""
    assert checks.textspan_omp_agree(agreement([2.0, 2.2])).caveat == "no null spread"


def test_a_task_where_the_model_is_at_chance_is_left_out_and_named():
    """Table 1's toy-digits: B 0.097 with chance 0.10 is no evidence either way."""
    acc = accuracy({**TAB1_GOOD, "B": [0.097, 0.72, 0.72]})
    v = checks.heads_carry_alignment(acc)
    assert v.status == HOLDS and "A (B 0.097, chance 0.100)" in v.caveat and "2 task(s)" in v.caveat
    at_chance = checks.heads_carry_alignment(accuracy({**TAB1_GOOD, **AT_CHANCE}))
    assert at_chance.status == UNTESTABLE and "0.1 above chance" in at_chance.reason


def test_unhealthy_training_runs_are_left_out_of_the_comparisons():
    """RDY kept epoch 0 on a task: "RDY falls behind RD" must not read that untrained RDY."""
    acc = accuracy({**TAB2_GOOD, "RDY": [0.9, 0.5, 0.9]}).assign(healthy=True)
    assert checks.rdy_behind_rd(acc).status == HOLDS
    acc.loc[(acc["method"] == "RDY") & (acc["dataset"] == "B"), "healthy"] = False
    v = checks.rdy_behind_rd(acc)
    assert v.status == FAILS and "RDY on B" in v.caveat
    acc["healthy"] = acc["method"] != "RDY"
    assert checks.rdy_behind_rd(acc).status == UNTESTABLE


def test_a_run_flagged_on_several_seeds_is_named_once_with_its_seed_count():
    acc = accuracy({**TAB2_GOOD, "RDY": [0.9, 0.5, 0.9]}).assign(healthy=True)
    seeds = pd.concat([acc.assign(seed=s) for s in (0, 1, 2)], ignore_index=True)
    seeds.loc[(seeds["method"] == "RDY") & (seeds["dataset"] == "B") & (seeds["seed"] < 2), "healthy"] = False
    caveat = checks.rdy_behind_rd(seeds).caveat
    assert "RDY on B (2 seeds)" in caveat and caveat.count("RDY on B") == 1


def test_the_toy_figure_2_directions_are_reported_as_not_holding():
    """The issue's case: L/N falling 2.23 -> 1.34 and EVR1 rising 0.45 -> 0.59 across depth."""
    toy = layers(np.linspace(2.23, 1.34, 8), evr1=np.linspace(0.45, 0.59, 8))
    assert checks.nonlinearity_rises(toy).status == FAILS
    assert checks.evr1_falls(toy).status == FAILS


def test_average_rows_of_a_printed_table_are_not_a_dataset():
    acc = pd.concat([accuracy({"Base": 0.6, "RD": 0.9, "Lin": 0.9}),
                     accuracy({"Base": 0.6, "RD": 0.1, "Lin": 0.9}, datasets=("Average",))])
    assert checks.residual_near_lin(acc).status == HOLDS


def test_verdict_refuses_an_unknown_status():
    with pytest.raises(ValueError, match="holds"):
        claims.Verdict("probably", {}, "x")


def test_claim_lookup_names_the_valid_ids():
    assert claims.claim("rdy_behind_rd").page == "fig05_tab02_residual_alignment"
    with pytest.raises(KeyError, match="rdy_behind_rd"):
        claims.claim("nope")


def test_every_claim_has_a_criterion_a_known_page_and_tables_its_page_provides():
    for c in claims.CLAIMS:
        assert c.page in claims.PAGES
        assert set(c.tables) <= set(claims.TABLES[c.page])
        assert set(claims.OPTIONAL_COLUMNS.get(c.page, {})) <= set(claims.TABLES[c.page])
        assert claims.criterion(c.id)
    assert len(set(claims.CLAIM_IDS)) == len(claims.CLAIMS)
    assert set(claims.PAGE_TITLES) == set(claims.PAGES) == set(claims.TABLES)


# --- the paper's own numbers ------------------------------------------------------------------------------

def paper_tables():
    fig3 = reference("fig3_agreement")
    fig3["unit"] = "L" + fig3["layer"].astype(str) + ".H" + fig3["head"].astype(str)
    # every model of Figures 2 and 7 has heads of 64 dimensions (ViT-L/14, ViT-B/32, DINOv2-L, BLIP-L)
    return {"fig02_intrinsic_dimension": reference("fig2").assign(d_head=64),
            "fig03_textspan_vs_omp": {"agreement": fig3},
            "tab01_coarse_unit_alignment": reference("table1"),
            "fig05_tab02_residual_alignment": {"accuracy": reference("table2"), "params": reference("table2_params")}}


def test_the_papers_main_text_numbers_satisfy_the_papers_claims():
    """The criteria read the paper's sentences: on the models of its main text they must hold."""
    ledger = claims.ledger(paper_tables())
    main = {"fig02_intrinsic_dimension": None,  # every model of Figures 2 and 7
            "fig03_textspan_vs_omp": None}
    for page, models in main.items():
        rows = ledger[ledger["page"] == page]
        if models is not None:
            rows = rows[rows["model"].isin(models)]
        tested = rows[rows["status"] != UNTESTABLE]
        assert len(tested) and set(tested["status"]) == {HOLDS}, tested[["claim", "model", "numbers"]]


def test_the_papers_printed_accuracies_carry_no_test_set_size_so_section_4_is_not_testable_on_them():
    """Without n and chance a printed accuracy has no interval and no check that the model is above chance."""
    ledger = claims.ledger(paper_tables())
    rows = ledger[ledger["section"].isin(["4.1", "4.2"])]
    assert set(rows["status"]) == {UNTESTABLE}
    assert rows["reason"].str.contains("number of test images|needs accuracies").all()


# --- the ledger ---------------------------------------------------------------------------------------------

def toy_build():
    return {"fig02_intrinsic_dimension": layers(RISING, model="toy CLIP"),
            "fig04_spectral_dataset_similarity": {"similarity": pd.concat([
                similarity({"A": falling(), "Random": falling(0.3)}, model="toy CLIP"),
                similarity({"A": falling(), "Random": falling(0.2)}, model="other")]),
                "null": pd.concat([null(model="toy CLIP"), null(model="other")])},
            "fig05_tab02_residual_alignment": {"accuracy": accuracy(TAB2_GOOD, model="toy CLIP"),
                                               "params": params(PARAMS_GOOD, model="toy CLIP")}}


def test_ledger_has_a_row_per_claim_and_model_and_every_claim_once_at_least():
    ledger = claims.ledger(toy_build())
    assert list(ledger.columns) == claims.LEDGER_COLUMNS
    assert set(ledger["claim"]) == set(claims.CLAIM_IDS)
    fig02 = ledger[ledger["page"] == "fig02_intrinsic_dimension"]
    assert set(fig02["model"]) == {"toy CLIP"} and len(fig02) == 6
    fig04 = ledger[ledger["page"] == "fig04_spectral_dataset_similarity"]
    assert len(fig04[fig04["claim"] == "heads_specialise"]) == 2
    across = fig04[fig04["claim"] == "order_consistent"]
    assert len(across) == 1 and across["model"].iloc[0] == ""


def test_dataset_order_compares_each_pair_of_models_on_the_datasets_both_saw():
    """A build mixes the toy CLIP (toy datasets) with two real networks (real datasets): the pair of real networks
    decides the cross-model claim; a model that shares no three datasets with another is left out, not fatal."""
    real = {"A": falling(), "B": falling(0.1), "C": falling(0.3)}
    table = pd.concat([similarity({"toy-colour": falling(), "toy-shape": falling(0.1), "toy-noise": falling(0.4)},
                                  model="toy CLIP"),
                       similarity(real, model="DINOv2-S"),
                       similarity({**real, "B": falling(0.12)}, model="CLIP-B/16")])
    v = checks.dataset_order_consistent(table)
    assert v.status == HOLDS and v.numbers["mean Pearson r"] > 0.99
    assert v.numbers["pairs"].startswith("CLIP-B/16 / DINOv2-S: ") and "over 3 datasets" in v.numbers["pairs"]
    reversed_order = pd.concat([table[table["model"] != "CLIP-B/16"],
                                similarity({"A": falling(0.3), "B": falling(0.1), "C": falling()}, model="CLIP-B/16")])
    assert checks.dataset_order_consistent(reversed_order).status == FAILS
    apart = table[table["model"] != "CLIP-B/16"]
    assert checks.dataset_order_consistent(apart).status == UNTESTABLE
    assert "sharing at least 3" in checks.dataset_order_consistent(apart).reason


def test_ledger_marks_pages_the_build_did_not_run_as_not_testable():
    ledger = claims.ledger(toy_build()).set_index("claim")
    assert ledger.loc["textspan_equals_somp", "status"] == UNTESTABLE
    assert "did not run" in ledger.loc["textspan_equals_somp", "reason"]
    assert ledger.loc["nonlinearity_rises", "status"] == HOLDS
    assert ledger.loc["rd_near_full", "status"] == HOLDS
    assert ledger.loc["rd_near_full", "link"] == "notebooks/fig05_tab02_residual_alignment.html"


def test_ledger_refuses_unknown_pages_tables_and_missing_columns():
    with pytest.raises(KeyError, match="fig02_intrinsic_dimension"):
        claims.ledger({"fig99": layers(RISING)})
    with pytest.raises(KeyError, match="agreement"):
        claims.ledger({"fig03_textspan_vs_omp": {"agreements": agreement([1.0])}})
    with pytest.raises(ValueError, match="evr1"):
        claims.ledger({"fig02_intrinsic_dimension": layers(RISING).drop(columns="evr1")})
    with pytest.raises(ValueError, match="mapping"):
        claims.ledger({"fig05_tab02_residual_alignment": accuracy(TAB2_GOOD)})


def test_page_verdicts_keep_only_that_pages_claims():
    rows = claims.page_verdicts("fig03_textspan_vs_omp", {"agreement": agreement([0.2, 1.5, 4.9])})
    assert set(rows["claim"]) == {"descriptions_faithful", "textspan_omp_agree", "pc1_sometimes_enough"}
    assert dict(zip(rows["claim"], rows["status"]))["descriptions_faithful"] == UNTESTABLE
    assert claims.counts(rows) == {HOLDS: 2, FAILS: 0, INCONCLUSIVE: 0, UNTESTABLE: 1}


def test_rendering_shows_badges_criteria_numbers_and_links():
    ledger = claims.ledger(toy_build())
    page = claims.verdicts_html(ledger[ledger["page"] == "fig02_intrinsic_dimension"])
    assert claims.BADGE_COLOURS[HOLDS] in page and "Spearman(layer, L/N) &gt; 0.5" in page
    assert "<a href" not in page and "<th style=\"text-align:left\">model</th>" not in page
    front = claims.verdicts_html(ledger, links=True)
    assert '<a href="notebooks/appA2_textspan_equals_somp.html">Appendix A.2</a>' in front
    assert claims.BADGE_COLOURS[UNTESTABLE] in front and "this build did not run the page" in front
    real = ledger.assign(source=ledger["source"].where(ledger["page"] != "fig02_intrinsic_dimension", "real_model"))
    real["link"] = real["source"].map(claims.page_link)
    assert '<a href="../notebooks/real_model.html">Real pretrained ViT</a>' in claims.verdicts_html(
        real, links=True, link_prefix="../")
    # each tested row shows its interval or p-value, and its caveat
    shown = claims.verdicts_html(ledger[ledger["claim"].isin(["rd_improves_base", "linear_id_rises"])])
    assert "RD - Base 0.310 [" in shown and "p 1.2e-04" in shown and "Caveat: 3 task(s), 95% intervals" in shown
    md = claims.verdict_markdown(ledger[ledger["claim"] == "rdstar_near_rd"])
    assert md.startswith("- **holds** (toy CLIP):") and "RD* / RD params 0.326" in md
    with pytest.raises(ValueError, match="not testable"):
        claims.badge("unknown")


def test_format_numbers_keeps_small_numbers_and_separates_thousands():
    text = claims.format_numbers({"RD params": 43008, "max residual difference": 3e-9, "rho": 0.51234, "on": "SVHN"})
    assert text == "RD params 43,008, max residual difference 3.0e-09, rho 0.512, on SVHN"
    assert claims.format_numbers({"linear ID": 12.0, "share": 0.5}) == "linear ID 12.0, share 0.500"


def test_recorded_tables_round_trip_into_the_same_ledger(monkeypatch, tmp_path):
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    build = toy_build()
    build["appA2_textspan_equals_somp"] = CASES[checks.textspan_equals_somp][FAILS][0]
    build["fig02_intrinsic_dimension"] = build["fig02_intrinsic_dimension"].assign(d_head=64, extra="dropped")
    for page, tables in build.items():
        claims.record(page, tables, run="toy")
    assert claims.recorded("smoke") == {}
    back = claims.recorded("toy")
    assert set(back) == set(build)
    assert back["appA2_textspan_equals_somp"]["equivalence"]["identical_atoms"].dtype == bool
    assert list(back["fig02_intrinsic_dimension"]["layers"].columns) == claims.TABLES["fig02_intrinsic_dimension"][
        "layers"] + ["d_head", "source"]
    pd.testing.assert_frame_equal(claims.ledger(back).drop(columns="numbers"),
                                  claims.ledger(build).drop(columns="numbers"))
    claims.record("fig02_intrinsic_dimension", layers(RISING[::-1], model="toy CLIP"), run="toy")
    again = claims.ledger(claims.recorded("toy")).set_index("claim")
    assert again.loc["nonlinearity_rises", "status"] == FAILS


def test_a_second_page_filing_another_model_keeps_the_first_models_rows(monkeypatch, tmp_path):
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    claims.record("fig02_intrinsic_dimension", layers(RISING, model="toy CLIP"), run="toy")
    claims.record("fig02_intrinsic_dimension", layers(RISING[::-1], model="DINOv2-S"), run="toy")
    ledger = claims.ledger(claims.recorded("toy")).set_index(["claim", "model"])
    assert ledger.loc[("nonlinearity_rises", "toy CLIP"), "status"] == "holds"
    assert ledger.loc[("nonlinearity_rises", "DINOv2-S"), "status"] == FAILS
    claims.clear_records("toy")
    assert claims.recorded("toy") == {}



def test_rows_link_to_the_notebook_that_filed_them(monkeypatch, tmp_path):
    """The real-model page files DINOv2-S's Figure 2 and 4 tables: its rows link to it, not to those pages."""
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv("RESIDUAL_NOTEBOOK", raising=False)
    f2, f4 = "fig02_intrinsic_dimension", "fig04_spectral_dataset_similarity"
    claims.record(f2, layers(RISING, model="toy CLIP"), run="toy")
    monkeypatch.setenv("RESIDUAL_NOTEBOOK", "real_model")  # what the book runner sets while the page runs
    claims.record(f2, layers(RISING, model="DINOv2-S"), run="toy")
    monkeypatch.delenv("RESIDUAL_NOTEBOOK")
    claims.record(f4, {"similarity": similarity({"a": falling(), "b": falling(0.2)}, model="DINOv2-S")}, run="toy",
                  source="real_model")
    claims.record(f4, {"similarity": similarity({"a": falling(), "b": falling(0.2)}, model="toy CLIP")}, run="toy")
    ledger = claims.ledger(claims.recorded("toy")).set_index(["claim", "model"])
    for claim_id in ("linear_id_rises", "similarity_falls_with_depth"):
        assert ledger.loc[(claim_id, "DINOv2-S"), ["source", "link"]].tolist() == ["real_model",
                                                                                  "notebooks/real_model.html"]
        page = claims.claim(claim_id).page
        assert ledger.loc[(claim_id, "toy CLIP"), ["source", "link"]].tolist() == [page, f"notebooks/{page}.html"]
    # a verdict across models reads rows of both notebooks: it belongs to the claim's page
    assert ledger.loc[("order_consistent", ""), "source"] == f4
    with pytest.raises(KeyError, match="real_model"):
        claims.record(f2, layers(RISING), run="toy", source="nowhere")


def test_records_filed_before_sources_link_to_the_claims_page(monkeypatch, tmp_path):
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    folder = tmp_path / "claims" / "toy" / "fig02_intrinsic_dimension"
    folder.mkdir(parents=True)
    layers(RISING, model="DINOv2-S").to_csv(folder / "layers.csv", index=False)  # no source column
    ledger = claims.ledger(claims.recorded("toy")).set_index("claim")
    assert ledger.loc["linear_id_rises", "link"] == "notebooks/fig02_intrinsic_dimension.html"
    monkeypatch.setenv("RESIDUAL_NOTEBOOK", "real_model")
    claims.record("fig02_intrinsic_dimension", layers(RISING, model="toy CLIP"), run="toy")  # old rows stay
    ledger = claims.ledger(claims.recorded("toy")).set_index(["claim", "model"])
    assert ledger.loc[("linear_id_rises", "DINOv2-S"), "source"] == "fig02_intrinsic_dimension"
    assert ledger.loc[("linear_id_rises", "toy CLIP"), "source"] == "real_model"


def test_pages_filing_the_same_table_at_once_keep_each_others_rows(monkeypatch, tmp_path):
    """Pages run at once (`book --jobs`): without the folder lock both pages read the table before either writes,
    and the second write drops the first page's rows. A slow write widens that window."""
    import sys
    import threading
    import time

    ledger = sys.modules["residual_lib.claims.ledger"]  # the package exports a function of the same name

    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    write = ledger.write_text
    monkeypatch.setattr(ledger, "write_text", lambda path, text: (time.sleep(0.3), write(path, text)))
    start = threading.Barrier(2)

    def file(model):
        start.wait()
        claims.record("fig02_intrinsic_dimension", layers(RISING, model=model), run="toy")

    threads = [threading.Thread(target=file, args=(m,)) for m in ("toy CLIP", "DINOv2-S")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = claims.recorded("toy")["fig02_intrinsic_dimension"]["layers"]
    assert sorted(table["model"].unique()) == ["DINOv2-S", "toy CLIP"] and len(table) == 2 * len(RISING)


def test_section_4_checks_read_the_mean_over_seeds_and_name_its_spread_and_the_classifier():
    """Three seeds of RD (0.70, 0.74, 0.78 on every task) read as their mean 0.74 against Base 0.6: RD - Base holds
    on the mean, while seed 0 alone (0.70 - 0.6 = 0.10) would too; a spread that only one seed carries stays named."""
    seeds = [accuracy({**TAB2_GOOD, "RD": rd}).assign(seed=s, classifier="class-mean, k=10")
             for s, rd in enumerate([0.70, 0.74, 0.78])]
    v = checks.residual_improves_base(pd.concat(seeds, ignore_index=True))
    assert v.status == HOLDS and v.numbers["RD"].startswith("0.740")
    assert "means over 3 training seeds" in v.caveat and "RD 0.040" in v.caveat and "Base" not in v.caveat.split(
        "seed sd")[1].split(";")[0]
    assert "class-mean, k=10 (class means of labelled images, not text)" in v.caveat
    text = checks.residual_improves_base(accuracy(TAB2_GOOD).assign(classifier="zero-shot (text)"))
    assert "seeds" not in text.caveat and "classifier" not in text.caveat
