"""Spectral cosine similarity (Eq. 2-4): properties, scipy's subspace_angles as the oracle, batched tables."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.linalg import subspace_angles

from residual_lib.analysis.pca import UnitPCA
from residual_lib.analysis.spectral import (MATCHINGS, cross_model_correlation, dataset_order, dataset_similarities,
                                   sampling_null, similarity_matrix, spectral_cosine_similarity, standout_heads,
                                   unit_similarities)
from residual_lib.units.synthetic import random_unit_set
from residual_lib.units.unit_set import UnitSet


def orthonormal_rows(rng, k, d):
    return np.linalg.qr(rng.normal(size=(d, k)))[0].T


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    u1, u2 = orthonormal_rows(rng, 6, 20), orthonormal_rows(rng, 4, 20)
    return u1, u2, np.sort(rng.uniform(0.1, 3, 6))[::-1], np.sort(rng.uniform(0.1, 3, 4))[::-1]


def test_identical_inputs_give_one(pair):
    u1, _, w1, _ = pair
    assert spectral_cosine_similarity(u1, u1, w1, w1) == pytest.approx(1.0, abs=1e-12)
    assert spectral_cosine_similarity(u1, u1) == pytest.approx(1.0, abs=1e-12)


def test_symmetric_and_bounded(pair):
    u1, u2, w1, w2 = pair
    s = spectral_cosine_similarity(u1, u2, w1, w2)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(spectral_cosine_similarity(u2, u1, w2, w1), abs=1e-12)
    rng = np.random.default_rng(5)
    for _ in range(50):
        a, b = rng.normal(size=(rng.integers(1, 6), 8)), rng.normal(size=(rng.integers(1, 6), 8))
        wa, wb = rng.uniform(0, 2, len(a)), rng.uniform(0, 2, len(b))
        assert 0.0 <= spectral_cosine_similarity(a, b, wa, wb) <= 1.0 + 1e-12


@pytest.mark.parametrize("matching", MATCHINGS)
def test_every_matching_rule_gives_one_on_identical_sets_and_is_symmetric_and_bounded(pair, matching):
    u1, u2, w1, w2 = pair
    assert spectral_cosine_similarity(u1, u1, w1, w1, matching=matching) == pytest.approx(1.0, abs=1e-12)
    assert spectral_cosine_similarity(u1, u1, matching=matching) == pytest.approx(1.0, abs=1e-12)
    s = spectral_cosine_similarity(u1, u2, w1, w2, matching=matching)
    assert s == pytest.approx(spectral_cosine_similarity(u2, u1, w2, w1, matching=matching), abs=1e-12)
    rng = np.random.default_rng(6)
    for _ in range(50):
        a, b = rng.normal(size=(rng.integers(1, 6), 8)), rng.normal(size=(rng.integers(1, 6), 8))
        wa, wb = rng.uniform(0, 2, len(a)), rng.uniform(0, 2, len(b))
        assert 0.0 <= spectral_cosine_similarity(a, b, wa, wb, matching=matching) <= 1.0 + 1e-12


# Hand-built 3x3 case. u1 = identity, so |cos(u1_i, u2_j)| = |u2[j, i]|; the rows of u2 are unit vectors:
#            j=0   j=1   j=2
#   i=0  [ 0.60  0.96  0.48 ]        w1 = (3, 2, 1), w2 = (4, 1, 1)
#   i=1  [ 0.80  0.28  0.60 ]        denominator (Eq. 4): (3*4)^2 + (2*1)^2 + (1*1)^2 = 149
#   i=2  [ 0.00  0.00  0.64 ]
HAND_U2 = np.array([[0.6, 0.8, 0.0], [0.96, 0.28, 0.0], [0.48, 0.6, 0.64]])
HAND_W1, HAND_W2 = np.array([3.0, 2.0, 1.0]), np.array([4.0, 1.0, 1.0])


def test_hand_3x3_cosine_rule():
    # greedy on cosines: 0.96 at (0,1); then rows {1,2} x cols {0,2}: 0.80 at (1,0); then (2,2) = 0.64
    expected = np.sqrt(((0.96 * 3 * 1) ** 2 + (0.8 * 2 * 4) ** 2 + (0.64 * 1 * 1) ** 2) / 149)
    assert spectral_cosine_similarity(np.eye(3), HAND_U2, HAND_W1, HAND_W2, matching="cosine") == pytest.approx(expected)
    unweighted = np.sqrt((0.96 ** 2 + 0.8 ** 2 + 0.64 ** 2) / 3)
    assert spectral_cosine_similarity(np.eye(3), HAND_U2, matching="cosine") == pytest.approx(unweighted)


def test_hand_3x3_weighted_rule():
    # weighted matrix C_ij w1_i w2_j:      [[7.20, 2.88, 1.44], [6.40, 0.56, 1.20], [0, 0, 0.64]]
    # greedy on it: 7.20 at (0,0); then rows {1,2} x cols {1,2}: 1.20 at (1,2); then (2,1) = 0
    expected = np.sqrt((7.2 ** 2 + 1.2 ** 2 + 0.0 ** 2) / 149)
    assert spectral_cosine_similarity(np.eye(3), HAND_U2, HAND_W1, HAND_W2, matching="weighted") == pytest.approx(expected)


def test_hand_3x3_index_rule():
    # same-index pairs (0,0), (1,1), (2,2): cosines 0.60, 0.28, 0.64
    expected = np.sqrt(((0.6 * 3 * 4) ** 2 + (0.28 * 2 * 1) ** 2 + (0.64 * 1 * 1) ** 2) / 149)
    assert spectral_cosine_similarity(np.eye(3), HAND_U2, HAND_W1, HAND_W2, matching="index") == pytest.approx(expected)
    unweighted = np.sqrt((0.6 ** 2 + 0.28 ** 2 + 0.64 ** 2) / 3)
    assert spectral_cosine_similarity(np.eye(3), HAND_U2, matching="index") == pytest.approx(unweighted)


def test_unknown_matching_rule_names_the_valid_ones(pair):
    u1, u2, _, _ = pair
    with pytest.raises(ValueError, match="valid: cosine, weighted, index"):
        spectral_cosine_similarity(u1, u2, matching="hungarian")


def test_orthogonal_sets_give_zero():
    eye = np.eye(6)
    assert spectral_cosine_similarity(eye[:3], eye[3:]) == 0.0


def test_invariant_to_sign_flips_and_common_rotation(pair):
    u1, u2, w1, w2 = pair
    s = spectral_cosine_similarity(u1, u2, w1, w2)
    signs = np.where(np.random.default_rng(1).random(6) > 0.5, -1.0, 1.0)
    assert spectral_cosine_similarity(u1 * signs[:, None], u2, w1, w2) == pytest.approx(s, abs=1e-12)
    rot = np.linalg.qr(np.random.default_rng(2).normal(size=(20, 20)))[0]
    assert spectral_cosine_similarity(u1 @ rot, u2 @ rot, w1, w2) == pytest.approx(s, abs=1e-12)


def test_invariant_to_weight_scale_and_sensitive_to_weights(pair):
    u1, u2, w1, w2 = pair
    s = spectral_cosine_similarity(u1, u2, w1, w2)
    assert spectral_cosine_similarity(u1, u2, 7 * w1, 0.1 * w2) == pytest.approx(s, abs=1e-12)
    assert spectral_cosine_similarity(u1, u2) != pytest.approx(s, abs=1e-6)


def test_greedy_matching_by_hand():
    # |cos| matrix [[0.8, 0.6], [0.6, 0.8]]: greedy takes (0,0) = 0.8 then (1,1) = 0.8.
    u1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    u2 = np.array([[0.8, 0.6], [-0.6, 0.8]])
    w1, w2 = np.array([2.0, 1.0]), np.array([3.0, 1.0])
    expected = np.sqrt(((0.8 * 2 * 3) ** 2 + (0.8 * 1 * 1) ** 2) / ((2 * 3) ** 2 + (1 * 1) ** 2))
    assert spectral_cosine_similarity(u1, u2, w1, w2) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k1,k2", [(3, 3), (5, 3), (2, 6)])
def test_unweighted_principal_vectors_match_scipy_subspace_angles(k1, k2):
    """Oracle: scipy.linalg.subspace_angles. Unweighted and given as principal vectors (cosine matrix
    diagonal), the greedy picks cos(theta_n) for each principal angle, so sim = RMS of those cosines."""
    rng = np.random.default_rng(k1 * 10 + k2)
    a, b = orthonormal_rows(rng, k1, 12).T, orthonormal_rows(rng, k2, 12).T
    left, _, right_t = np.linalg.svd(a.T @ b)
    p, q = (a @ left).T, (b @ right_t.T).T
    theta = subspace_angles(a, b)
    expected = np.sqrt(np.mean(np.cos(theta) ** 2))
    assert spectral_cosine_similarity(p, q) == pytest.approx(expected, abs=1e-10)


def test_one_dimensional_case_is_absolute_cosine():
    u, v = np.array([[1.0, 2.0, 2.0]]), np.array([[-2.0, 0.0, 1.0]])
    cos = abs(u @ v.T)[0, 0] / (np.linalg.norm(u) * np.linalg.norm(v))
    assert spectral_cosine_similarity(u, v) == pytest.approx(cos)
    assert spectral_cosine_similarity(u, v) == pytest.approx(np.cos(subspace_angles(u.T, v.T))[0])


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="different spaces"):
        spectral_cosine_similarity(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="non-negative"):
        spectral_cosine_similarity(np.eye(3), np.eye(3), -np.ones(3), np.ones(3))


@pytest.fixture(scope="module")
def caches():
    same = random_unit_set(n=300, n_layers=2, n_heads=2, r=8, embed_dim=16, seed=0)
    resample = random_unit_set(n=300, n_layers=2, n_heads=2, r=8, embed_dim=16, seed=0)
    other = random_unit_set(n=300, n_layers=2, n_heads=2, r=8, embed_dim=16, seed=9)
    # same model (same bases), other data: keep the bases of `same`, resample the coordinates
    rng = np.random.default_rng(4)
    for u in resample.heads:
        c = resample.unit_coords[u]
        resample.unit_coords[u] = (c[rng.permutation(len(c))] + 0.3 * rng.normal(size=c.shape)).astype(np.float32)
    for u in other.heads:
        other.unit_bases[u], other.unit_offsets[u] = same.unit_bases[u], same.unit_offsets[u]
    return same, resample, other


def test_batched_table_equals_pairwise_function(caches):
    same, resample, other = caches
    pa = UnitPCA(units=same.heads, device="cpu", progress=False).fit(same)
    pb = UnitPCA(units=same.heads, device="cpu", progress=False).fit(other)
    table = unit_similarities(pa, pb, device="cpu")
    assert list(table["unit"]) == same.heads
    for _, row in table.iterrows():
        ka, kb = row["k_a"], row["k_b"]
        s = spectral_cosine_similarity(pa.components_[row["unit"]][:ka], pb.components_[row["unit"]][:kb],
                                       pa.explained_variance_[row["unit"]][:ka], pb.explained_variance_[row["unit"]][:kb])
        assert row["similarity"] == pytest.approx(s, abs=1e-10)
    cum = np.cumsum(pa.explained_variance_ratio_["L0.H0"])
    assert cum[table.loc[0, "k_a"] - 1] > 0.9 >= cum[table.loc[0, "k_a"] - 2]


@pytest.mark.parametrize("matching", MATCHINGS)
def test_batched_table_equals_pairwise_function_for_every_rule(caches, matching):
    same, _, other = caches
    pa = UnitPCA(units=same.heads, device="cpu", progress=False).fit(same)
    pb = UnitPCA(units=same.heads, device="cpu", progress=False).fit(other)
    table = unit_similarities(pa, pb, device="cpu", matching=matching)
    for _, row in table.iterrows():
        ka, kb = row["k_a"], row["k_b"]
        s = spectral_cosine_similarity(pa.components_[row["unit"]][:ka], pb.components_[row["unit"]][:kb],
                                       pa.explained_variance_[row["unit"]][:ka], pb.explained_variance_[row["unit"]][:kb],
                                       matching=matching)
        assert row["similarity"] == pytest.approx(s, abs=1e-10)


def test_dataset_similarities_order_and_matrix(caches):
    same, resample, other = caches
    sims = dataset_similarities(same, {"self": same, "resampled": resample, "other": other}, device="cpu", progress=False)
    means = sims.groupby("dataset")["similarity"].mean()
    assert means["self"] == pytest.approx(1.0)
    assert dataset_order(sims) == ["self", "resampled", "other"]
    mat = similarity_matrix(sims)
    assert list(mat.index) == ["self", "resampled", "other"] and list(mat.columns) == same.heads


def test_sampling_null_compares_two_disjoint_halves_of_one_dataset_as_two_datasets_are_compared(caches):
    same, _, _ = caches
    null = sampling_null(same, n_draws=3, seed=5, device="cpu", matching="weighted")
    assert len(null) == 3 * len(same.heads) and sorted(null["draw"].unique()) == [0, 1, 2]
    order = np.random.default_rng(5).permutation(same.n)  # the first draw, by hand, in output space

    def rows(idx):
        return UnitSet({u: same.unit_coords[u][idx] for u in same.heads}, same.unit_bases, same.unit_offsets,
                       same.embedding[idx], same.labels[idx])
    by_hand = dataset_similarities(rows(order[:150]), {"half": rows(order[150:])}, device="cpu", progress=False,
                                   matching="weighted")
    np.testing.assert_allclose(null.loc[null["draw"] == 0, "similarity"], by_hand["similarity"], atol=1e-10)
    assert (null["similarity"] < 1 - 1e-6).all()  # a fresh sample is not the same sample
    assert null.groupby("draw")["similarity"].mean().nunique() == 3
    pd.testing.assert_frame_equal(null, sampling_null(same, n_draws=3, seed=5, device="cpu", matching="weighted"))
    with pytest.raises(ValueError, match="n_draws=0"):
        sampling_null(same, n_draws=0)


def test_cross_model_correlation_is_pearson_of_dataset_profiles():
    sims = pd.DataFrame({"model": ["A"] * 6 + ["B"] * 6, "dataset": list("xxyyzz") * 2, "unit": ["u", "v"] * 6,
                         "similarity": [1, 0.8, 0.5, 0.5, 0.2, 0.0, 0.9, 0.9, 0.4, 0.6, 0.1, 0.3]})
    corr = cross_model_correlation(sims)
    expected = np.corrcoef([0.9, 0.5, 0.1], [0.9, 0.5, 0.2])[0, 1]
    assert corr.loc["A", "B"] == pytest.approx(expected)
    with pytest.raises(KeyError, match="model"):
        cross_model_correlation(sims.drop(columns="model"))


def test_standout_heads_pick_the_largest_drop_below_the_layer_mean():
    rows = [("d1", "L0.H0", 0, 0, 0.9), ("d1", "L0.H1", 0, 1, 0.3), ("d1", "L1.H0", 1, 0, 0.5), ("d1", "L1.H1", 1, 1, 0.5),
            ("d2", "L0.H0", 0, 0, 0.8), ("d2", "L0.H1", 0, 1, 0.8), ("d2", "L1.H0", 1, 0, 0.9), ("d2", "L1.H1", 1, 1, 0.5)]
    sims = pd.DataFrame(rows, columns=["dataset", "unit", "layer", "head", "similarity"]).assign(kind="head")
    top = standout_heads(sims, n=2)
    assert list(top["unit"]) == ["L0.H1", "L1.H1"]
    assert list(top["dataset"]) == ["d1", "d2"]
    assert top.loc[0, "gap"] == pytest.approx(0.3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_table_cuda_equals_cpu(caches):
    same, _, other = caches
    pa = UnitPCA(units=same.heads, device="cpu", progress=False).fit(same)
    pb = UnitPCA(units=same.heads, device="cpu", progress=False).fit(other)
    np.testing.assert_allclose(unit_similarities(pa, pb, device="cuda")["similarity"],
                               unit_similarities(pa, pb, device="cpu")["similarity"], atol=1e-10)
