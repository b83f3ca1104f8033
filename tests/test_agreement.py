"""Agreement Z-score: closed form against Monte Carlo sampling, and its properties."""

import numpy as np
import pytest

from residual_lib.agreement import agreement_z


def _dictionary(m=400, e=16, seed=0):
    """Clustered embeddings (20 themes), like a text dictionary with families of related descriptions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, e))
    return centres[rng.integers(0, 20, size=m)] + 0.5 * rng.normal(size=(m, e))


def test_set_null_matches_monte_carlo_over_random_sets():
    """Oracle: 20k random sets of |B| distinct entries; the closed-form null must give Z with mean 0, std 1."""
    e = _dictionary()
    rng = np.random.default_rng(1)
    a = [3, 50, 77, 120, 301]
    z = [agreement_z(e, a, rng.choice(400, 5, replace=False), null="set") for _ in range(20000)]
    assert abs(np.mean(z)) < 0.03
    assert abs(np.std(z) - 1) < 0.03


def test_atom_null_is_the_set_null_scaled_by_the_set_size():
    e = _dictionary()
    a, b = [1, 2, 3], [10, 11, 12, 13, 14]
    ratio = agreement_z(e, a, b, null="set") / agreement_z(e, a, b, null="atom")
    np.testing.assert_allclose(ratio, np.sqrt(5 * 399 / 395))


def test_identical_sets_score_high_and_random_sets_score_low():
    e = _dictionary()
    rng = np.random.default_rng(2)
    sets = [rng.choice(400, 5, replace=False) for _ in range(200)]
    same = np.array([[agreement_z(e, s, s, null=null) for null in ("atom", "set")] for s in sets])
    rand = np.array([abs(agreement_z(e, s, rng.choice(400, 5, replace=False), null="set")) for s in sets])
    assert same[:, 0].min() > 0 and same[:, 1].min() > 1.0
    assert rand.mean() < 1.0 < same[:, 1].mean() - 1


def test_a_set_from_the_same_theme_scores_higher_than_one_from_another():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(2, 16))
    e = np.concatenate([centres[0] + 0.3 * rng.normal(size=(100, 16)), centres[1] + 0.3 * rng.normal(size=(100, 16))])
    assert agreement_z(e, [0, 1, 2], [5, 6, 7]) > 0.5 > -0.5 > agreement_z(e, [0, 1, 2], [105, 106, 107])


def test_invariant_to_embedding_scale_and_order_of_indices():
    e = _dictionary()
    z = agreement_z(e, [4, 8, 15], [16, 23, 42])
    assert agreement_z(3 * e, [15, 4, 8], [42, 16, 23]) == pytest.approx(z, abs=1e-12)


def test_bad_inputs_name_the_valid_values():
    e = _dictionary(m=10)
    with pytest.raises(ValueError, match="null='paper'; valid: atom, set"):
        agreement_z(e, [0], [1], null="paper")
    with pytest.raises(ValueError, match=r"set b = \[10\]"):
        agreement_z(e, [0], [10])
    with pytest.raises(ValueError, match="distinct"):
        agreement_z(e, [0], [1, 1], null="set")
