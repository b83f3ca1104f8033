"""Linear ID and TwoNN: scikit-dimension's TwoNN as the oracle, known manifolds, duplicate/tie rules."""

import numpy as np
import pandas as pd
import pytest
import torch
import skdim
from sklearn.datasets import make_swiss_roll

from residual_lib.analysis.intrinsic_dim import (TwoNN, layer_summary, linear_id, paper_ratio_check, two_nearest,
                                        unique_rows, unit_intrinsic_dimensions)
from residual_lib.paper.reference import reference
from residual_lib.units.synthetic import random_unit_set


def test_linear_id_is_first_k_strictly_above_threshold():
    assert linear_id(np.array([0.5, 0.3, 0.19, 0.01])) == 4  # cumulative 0.99 is not > 0.99
    assert linear_id(np.array([0.5, 0.3, 0.195, 0.005])) == 3
    assert linear_id(np.array([1.0, 0.0, 0.0])) == 1
    assert linear_id(np.array([0.6, 0.4]), threshold=0.5) == 1
    assert linear_id(np.array([0.5, 0.3])) == 2  # a truncated spectrum is not renormalised
    with pytest.raises(ValueError, match="threshold"):
        linear_id(np.array([1.0]), threshold=1.0)


def test_two_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 7)) + 100.0  # far from the origin: the search centres first
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    ref = np.sort(d, axis=1)[:, :2]
    r1, r2 = two_nearest(torch.from_numpy(x), chunk_elements=1000)
    np.testing.assert_allclose(np.stack([r1.numpy(), r2.numpy()], 1), ref, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_twonn_matches_scikit_dimension(seed):
    """Oracle: skdim.id.TwoNN on the same data, within 2% (in fact to rounding: same fit, same neighbours)."""
    rng = np.random.default_rng(seed)
    x = np.tanh(rng.normal(size=(1500, 6)) @ rng.normal(size=(6, 40)))
    ours = TwoNN(device="cpu").fit(x).dimension_
    theirs = skdim.id.TwoNN(discard_fraction=0.1).fit(x).dimension_
    assert ours == pytest.approx(theirs, rel=0.02)


@pytest.mark.parametrize("d", [3, 8])
def test_twonn_recovers_linear_subspace_in_100_dims(d):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(3000, d)) @ np.linalg.qr(rng.normal(size=(100, d)))[0].T
    assert TwoNN(device="cpu").fit(x).dimension_ == pytest.approx(d, rel=0.10)


def test_twonn_recovers_swiss_roll():
    x, _ = make_swiss_roll(3000, random_state=0)
    assert TwoNN(device="cpu").fit(x).dimension_ == pytest.approx(2.0, rel=0.10)


@pytest.mark.parametrize("k", [2, 5])
def test_twonn_recovers_sphere(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(3000, k + 1))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x @ np.linalg.qr(rng.normal(size=(20, k + 1)))[0].T  # S^k embedded in 20 dims
    assert TwoNN(device="cpu").fit(x).dimension_ == pytest.approx(k, rel=0.10)


def test_duplicates_are_collapsed_and_ties_dropped():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(800, 4))
    base = TwoNN(device="cpu").fit(x)
    dup = TwoNN(device="cpu").fit(np.vstack([x, x[:100]]))
    assert dup.n_duplicates_ == 100 and base.n_duplicates_ == 0
    assert dup.dimension_ == base.dimension_
    # An integer grid: every point has at least two neighbours at distance exactly 1 -> all tied.
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    mixed = TwoNN(device="cpu").fit(np.vstack([grid, 1000.0 + x[:, :2]]))
    assert mixed.n_ties_ == 100 and len(mixed.mu_) == 800
    with pytest.raises(ValueError, match="need at least 2"):
        TwoNN(device="cpu").fit(grid)


def test_unique_rows_equals_torch_unique():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(50, 3)))
    with_dups = torch.cat([x, x[:7], x[3:5]])
    ours = unique_rows(with_dups)
    assert len(ours) == 50
    assert torch.equal(torch.unique(ours, dim=0), torch.unique(with_dups, dim=0))
    # distinct rows with the same projection would collide: the fallback still separates them
    grid = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert len(unique_rows(grid)) == 3


def test_twonn_rejects_bad_parameters():
    with pytest.raises(ValueError, match="discard_fraction"):
        TwoNN(discard_fraction=0.0).fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="distinct points"):
        TwoNN().fit(np.ones((10, 3)))


def test_unit_table_and_both_layer_ratios():
    units = random_unit_set(n=400, n_layers=3, n_heads=2, r=12, embed_dim=24, latent_dim=2, seed=0)
    df = unit_intrinsic_dimensions(units, device="cpu", progress=False)
    assert list(df["unit"]) == units.heads
    assert (df["linear_id"] >= 1).all() and (df["linear_id"] <= 12).all()
    np.testing.assert_allclose(df["ratio"], df["linear_id"] / df["twonn_id"])
    summary = layer_summary(df)
    assert list(summary["layer"]) == [0, 1, 2] and (summary["n_heads"] == 2).all()
    layer0 = df[df["layer"] == 0]
    assert summary.loc[0, "ratio_mean_of_heads"] == pytest.approx((layer0["linear_id"] / layer0["twonn_id"]).mean())
    assert summary.loc[0, "ratio_of_means"] == pytest.approx(layer0["linear_id"].mean() / layer0["twonn_id"].mean())
    # latent dimension grows by one per layer, so TwoNN should too
    assert summary["twonn_id"].is_monotonic_increasing


def test_paper_ratio_column_is_not_ratio_of_means_everywhere():
    """The paper's README counts 43 of 144 Fig 2/7 rows whose printed ratio is > 0.02 off L/N."""
    check = paper_ratio_check(reference("fig2"))
    assert len(check) == 144
    assert (~check["matches_ratio_of_means"]).sum() == 43


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_twonn_cuda_equals_cpu():
    x = np.tanh(np.random.default_rng(7).normal(size=(2000, 5)) @ np.random.default_rng(8).normal(size=(5, 30)))
    assert TwoNN(device="cuda").fit(x).dimension_ == pytest.approx(TwoNN(device="cpu").fit(x).dimension_, rel=1e-9)


def _swiss_roll_with_copies(nudge: bool):
    """A float32 swiss roll (3000 points) plus copies of 5% of its rows, exact or 1 ulp away in every coordinate."""
    x, _ = make_swiss_roll(3000, random_state=0)
    x = x.astype(np.float32)
    copies = x[np.random.default_rng(0).choice(len(x), 150, replace=False)]
    return x, np.vstack([x, np.nextafter(copies, np.float32(np.inf)) if nudge else copies])


@pytest.mark.filterwarnings("ignore:TwoNN. 150 of 3,150 distinct points set aside")
def test_near_duplicates_one_ulp_apart_count_as_duplicates():
    """Issue 10: 1-ulp copies gave 1.35 on this roll (the clean roll: 1.92); under the relative tolerance
    (8 float32 eps of the largest row norm) they collapse like exact copies, and the estimate equals
    scikit-dimension's on the clean points."""
    clean, near = _swiss_roll_with_copies(nudge=True)
    _, exact = _swiss_roll_with_copies(nudge=False)
    fit_near, fit_exact = TwoNN(device="cpu").fit(near), TwoNN(device="cpu").fit(exact)
    assert fit_near.n_duplicates_ == fit_exact.n_duplicates_ == 150 and fit_near.n_near_duplicates_ == 150
    assert fit_near.dimension_ == pytest.approx(fit_exact.dimension_, rel=1e-4)
    oracle = skdim.id.TwoNN(discard_fraction=0.1).fit(clean.astype(np.float64)).dimension_
    assert fit_near.dimension_ == pytest.approx(oracle, rel=1e-3)
    assert fit_near.dimension_ == pytest.approx(2.0, rel=0.10)


@pytest.mark.filterwarnings("ignore:TwoNN. 150 of 3,150 distinct points set aside")
def test_near_duplicate_tolerance_is_relative_and_can_be_turned_off():
    clean, near = _swiss_roll_with_copies(nudge=True)
    scaled = TwoNN(device="cpu").fit(near * np.float32(1e4))  # the same data in other units: same decision
    assert scaled.n_near_duplicates_ == 150
    off = TwoNN(device="cpu", duplicate_rtol=0.0, duplicate_scale=0.0).fit(near)
    assert off.n_duplicates_ == 0 and off.dimension_ < 1.6  # what the estimate was before
    with pytest.raises(ValueError, match="duplicate_rtol=-1"):
        TwoNN(duplicate_rtol=-1).fit(clean)


def _subspace_with_noisy_copies(noise: float):
    """2,000 float32 points on a 5-dim subspace of R^64 (spacing ~0.6) and 200 copies of them with `noise`."""
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(64, 5)))[0]
    clean = (rng.normal(size=(2000, 5)) @ basis.T).astype(np.float32)
    copies = clean[:200] + rng.normal(scale=noise, size=(200, 64)).astype(np.float32)
    return clean, np.concatenate([clean, copies])


def test_near_duplicates_are_judged_by_the_datas_own_neighbour_scale():
    """Issue 28 case 2: copies with 1e-5 noise (far above rounding, far below the spacing) gave 0.201, no word."""
    clean, noisy = _subspace_with_noisy_copies(1e-5)
    reference = TwoNN(device="cpu").fit(clean).dimension_
    with pytest.warns(UserWarning, match=r"TwoNN: 200 of 2,200 distinct points set aside as near-duplicates"):
        fit = TwoNN(device="cpu").fit(noisy)
    assert fit.n_near_duplicates_ == 200 and fit.dimension_ == pytest.approx(reference, rel=1e-6)
    assert reference == pytest.approx(5.0, rel=0.1)
    with pytest.warns(UserWarning, match="200 of 2,200"):
        scaled = TwoNN(device="cpu").fit(noisy * np.float32(1e3))  # other units, same decision
    assert scaled.n_near_duplicates_ == 200


def test_an_estimate_below_one_comes_with_a_warning_that_says_why():
    _, noisy = _subspace_with_noisy_copies(1e-3)  # copies ~100 times closer than the spacing: kept by default
    with pytest.warns(UserWarning, match=r"estimate 0\.\d+ is below 1, which no manifold has: .*clusters of copies"):
        fit = TwoNN(device="cpu").fit(noisy)
    assert fit.dimension_ < 1 and fit.n_near_duplicates_ == 0


@pytest.mark.parametrize("bad, message", [
    (np.float32("nan"), r"X has 1 row\(s\) with NaN or inf \(first: row 7\)"),
    (np.float32("inf"), r"X has 1 row\(s\) with NaN or inf \(first: row 7\)"),
])
def test_twonn_rejects_nan_and_inf(bad, message):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    x[7, 1] = bad
    with pytest.raises(ValueError, match=message):
        TwoNN(device="cpu").fit(x)


def test_twonn_rejects_no_rows():
    with pytest.raises(ValueError, match=r"X has 0 rows; TwoNN needs at least 3 distinct points"):
        TwoNN(device="cpu").fit(np.zeros((0, 4), dtype=np.float32))


def test_points_that_all_collapse_are_refused():
    base = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    x = np.vstack([base, np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(-np.inf))])
    with pytest.raises(ValueError, match="2 points left after collapsing near-duplicates"):
        TwoNN(device="cpu").fit(x)
