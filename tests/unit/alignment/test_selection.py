"""Coarse unit selection: scores U, U|T, S, top-k ablation, controls R, H, B."""

import numpy as np
import pytest
import torch
from scipy.linalg import orth
from scipy.stats import pearsonr

from residual_lib.alignment.selection import (HEAD_SCORES, SCORES, coarse_selection, correlation_scores, fraction_sweep, head_scores,
                                    kept_accuracy, n_kept, qr_basis, random_heads, span_projector, top_heads)
from residual_lib.units.unit_set import UnitSet
from residual_lib.alignment.classifier import Classifier
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
    full = Classifier(torch.nn.functional.normalize(torch.tensor(rng.normal(size=(20, 16)), dtype=torch.float32)),
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


def two_head_units() -> UnitSet:
    """Two heads, no other unit (output = A + B), E = 3, four samples; x, y orthogonal +-1 patterns.

    A_i = (10, 0, -10) + x_i (1, 1, 1)    B_i = y_i (1, -2, 1)
    """
    x, y = np.array([1.0, -1, 1, -1]), np.array([1.0, 1, -1, -1])
    a = np.array([10.0, 0, -10]) + x[:, None] * np.ones(3)
    b = y[:, None] * np.array([1.0, -2, 1])
    eye = np.eye(3)
    return UnitSet({"L0.H0": a, "L0.H1": b}, {"L0.H0": eye, "L0.H1": eye}, {"L0.H0": np.zeros(3), "L0.H1": np.zeros(3)},
                   embedding=a + b, labels=np.zeros(4, dtype=int))


def test_per_sample_and_per_direction_rank_two_heads_oppositely():
    """Hand-derived. Class embeddings = the standard basis, so U|T's QR directions are the coordinate axes.

    Per direction j (corr over the 4 samples; x, y orthogonal with equal norms, u = (1, -2, 1)):
      corr(A_j, A_j + B_j) = 1 / sqrt(1 + u_j^2)        -> A: (2/sqrt(2) + 1/sqrt(5)) / 3
      corr(B_j, A_j + B_j) = |u_j| / sqrt(1 + u_j^2)    -> B: (2/sqrt(2) + 2/sqrt(5)) / 3
    Per sample (corr over the 3 coordinates; centred A_i = (10, 0, -10), centred B_i = y_i u, orthogonal):
      A: 200 / sqrt(200 * 206) = sqrt(200/206);  B: y_i^2 6 / (|y_i| sqrt(6) sqrt(206)) = sqrt(6/206), every sample.
    """
    units = two_head_units()
    axes = Classifier(torch.eye(3), ("a", "b", "c"))
    direction = head_scores(units, axes, "U|T", head_score="per_direction")
    sample = head_scores(units, axes, "U|T", head_score="per_sample")
    assert direction["L0.H0"] == pytest.approx((2 / np.sqrt(2) + 1 / np.sqrt(5)) / 3)
    assert direction["L0.H1"] == pytest.approx((2 / np.sqrt(2) + 2 / np.sqrt(5)) / 3)
    assert sample["L0.H0"] == pytest.approx(np.sqrt(200 / 206))
    assert sample["L0.H1"] == pytest.approx(np.sqrt(6 / 206))
    assert top_heads(direction, 1) == ["L0.H1"] and top_heads(sample, 1) == ["L0.H0"]


def test_per_direction_u_oracle_numpy_qr_and_scipy_pearsonr():
    """Oracle: numpy's QR of the outputs and scipy.stats.pearsonr along each direction against the heads' sum."""
    units, _ = random_unitset(n=60)
    scores = head_scores(units, None, "U", head_score="per_direction")
    q = np.linalg.qr(units.embedding.astype(np.float64).T)[0]
    heads_sum = sum(units.output_space(h).astype(np.float64) for h in units.heads)
    for head in ("L0.H1", "L1.H2"):
        rep = units.output_space(head).astype(np.float64)
        expected = np.mean([pearsonr(rep @ q[:, k], heads_sum @ q[:, k])[0] for k in range(q.shape[1])])
        assert scores[head] == pytest.approx(expected, abs=1e-6)  # the heads are summed in float32


def test_qr_basis_follows_row_order_and_is_orthonormal():
    rows = np.array([[3.0, 4.0, 0.0], [1.0, 0.0, 1.0]])
    q = qr_basis(rows)
    np.testing.assert_allclose(q.T @ q, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.abs(q[:, 0]), [0.6, 0.8, 0.0], atol=1e-12)


@pytest.mark.parametrize("head_score", HEAD_SCORES)
def test_both_readings_rank_the_class_carrying_head_first(head_score):
    units, clf = random_unitset(signal_heads=("L1.H2",))
    for rule in ("U", "U|T"):
        assert top_heads(head_scores(units, clf, rule, head_score=head_score), 1) == ["L1.H2"], rule


def test_unknown_head_score_names_the_valid_ones():
    units, clf = random_unitset()
    with pytest.raises(ValueError, match="valid: per_sample, per_direction"):
        head_scores(units, clf, "U", head_score="per_class")
    result = coarse_selection(units, units, clf, fraction=0.1, n_random=2, head_score="per_direction")
    assert 0 <= result["U"] <= 1


def test_authors_head_count_floors_and_keeps_two_at_one_percent():
    """ViT-L (384 heads) and ViT-B (144): int(f n) vs round(f n); 1% keeps max(2, int(0.01 n))."""
    assert n_kept(384, 0.01, "authors") == 3 and n_kept(384, 0.01) == 4          # int(3.84) vs round(3.84)
    assert n_kept(144, 0.01, "authors") == 2 and n_kept(144, 0.01) == 1          # max(2, int(1.44)) vs round
    assert n_kept(384, 0.05, "authors") == n_kept(384, 0.05) == 19
    assert n_kept(144, 0.25, "authors") == n_kept(144, 0.25) == 36
    assert n_kept(144, 0.0, "authors") == 1 and n_kept(16, 0.05, "authors") == 1
    with pytest.raises(ValueError, match="valid: round, authors"):
        n_kept(10, 0.5, "ceil")


def test_authors_random_rule_is_the_top_k_of_one_seeded_randn_draw():
    heads = [f"L{i // 4}.H{i % 4}" for i in range(12)]
    draw = torch.randn(12, generator=torch.Generator().manual_seed(3))
    expected = [heads[i] for i in sorted(np.argsort(-draw.numpy())[:4])]
    assert random_heads(heads, 4, 3, random_rule="randn_topk") == expected
    with pytest.raises(ValueError, match="valid: choice, randn_topk"):
        random_heads(heads, 4, 3, random_rule="shuffle")


def test_r0_is_the_first_seed():
    score_units, clf = random_unitset(seed=1)
    test_units, _ = random_unitset(seed=2)
    row = coarse_selection(score_units, test_units, clf, fraction=0.25, n_random=3, random_rule="randn_topk",
                           head_count="authors")
    assert row["k"] == 2
    assert row["R0"] == kept_accuracy(test_units, clf, random_heads(test_units.heads, 2, 0, "randn_topk"))
