"""Coarse unit selection: scores U, U|T, S, top-k ablation, controls R, H, B."""

import numpy as np
import pytest
import torch
from scipy.linalg import orth
from scipy.stats import pearsonr

from residual_lib.selection import (SCORES, coarse_selection, correlation_scores, fraction_sweep, head_scores,
                                    kept_accuracy, n_kept, random_heads, span_projector, top_heads)
from residual_lib.zeroshot import ZeroShotClassifier
from unitset_factory import random_unitset


def test_heads_plus_mlps_plus_emb_reproduce_base_exactly():
    units, clf = random_unitset()
    everything = ["EMB", *units.heads, *[u for u in units.units if u.endswith("MLP")]]
    assert sorted(everything) == sorted(units.units)
    assert kept_accuracy(units, clf, everything) == clf.accuracy(units.embedding, units.labels)


def test_unsupervised_score_oracle_scipy_pearsonr():
    """Oracle: scipy.stats.pearsonr per sample, averaged."""
    units, _ = random_unitset(n=40)
    scores = correlation_scores(units)
    for head in ("L0.H1", "L1.H2"):
        rep = units.output_space(head)
        expected = np.mean([pearsonr(rep[i], units.embedding[i])[0] for i in range(units.n)])
        assert scores[head] == pytest.approx(expected, abs=1e-6)


def test_span_projector_oracle_scipy_orth():
    """Oracle: scipy.linalg.orth of the class embeddings; the projector is symmetric and idempotent."""
    _, clf = random_unitset()
    p = span_projector(clf)
    q = orth(clf.weights.numpy().T.astype(np.float64))
    np.testing.assert_allclose(p, q @ q.T, atol=1e-8)
    np.testing.assert_allclose(p @ p, p, atol=1e-8)
    assert np.trace(p) == pytest.approx(clf.n_classes)


def test_task_conditioned_equals_unsupervised_when_classes_span_everything():
    units, _ = random_unitset(embed_dim=16)
    rng = np.random.default_rng(1)
    full = ZeroShotClassifier(torch.nn.functional.normalize(torch.tensor(rng.normal(size=(20, 16)), dtype=torch.float32)),
                              tuple(map(str, range(20))))
    u, ut = head_scores(units, full, "U"), head_scores(units, full, "U|T")
    np.testing.assert_allclose(u.to_numpy(), ut.to_numpy(), atol=1e-6)


def test_every_score_ranks_the_class_carrying_head_first():
    units, clf = random_unitset(signal_heads=("L1.H2",))
    for rule in SCORES:
        assert top_heads(head_scores(units, clf, rule), 1) == ["L1.H2"], rule


def test_supervised_score_is_the_heads_own_accuracy():
    units, clf = random_unitset()
    s = head_scores(units, clf, "S")
    assert s["L0.H3"] == clf.accuracy(units.output_space("L0.H3"), units.labels)


def test_number_of_kept_heads():
    assert n_kept(16, 0.05) == 1
    assert n_kept(384, 0.05) == 19
    assert n_kept(144, 0.0) == 1
    assert n_kept(144, 0.5) == 72
    with pytest.raises(ValueError, match="1.5"):
        n_kept(10, 1.5)


def test_random_heads_are_distinct_and_seeded():
    heads = [f"L0.H{i}" for i in range(20)]
    a, b = random_heads(heads, 5, 3), random_heads(heads, 5, 3)
    assert a == b and len(set(a)) == 5
    assert random_heads(heads, 5, 4) != a


def test_coarse_selection_table_and_sweep():
    score_units, clf = random_unitset(seed=1)
    test_units, _ = random_unitset(seed=2)
    result = coarse_selection(score_units, test_units, clf, fraction=0.1, n_random=4)
    assert result["k"] == 1
    assert result["U"] == result["S"] == kept_accuracy(test_units, clf, ["L1.H2"])
    assert result["H"] == kept_accuracy(test_units, clf, test_units.heads)
    assert 0 <= result["R"] <= 1 and result["R_std"] >= 0
    sweep = fraction_sweep(score_units, test_units, clf, fractions=(0.0, 0.5), n_random=3)
    assert set(sweep["rule"]) == {"U", "U|T", "S", "R"}
    assert sweep.query("rule == 'R'").shape[0] == 6
    assert sorted(sweep["k"].unique()) == [1, 4]
    with pytest.raises(ValueError, match="valid: U, U\\|T, S"):
        head_scores(score_units, clf, "X")
