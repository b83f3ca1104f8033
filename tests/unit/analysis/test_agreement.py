"""Agreement Z-score: closed form against Monte Carlo sampling, and its properties."""

import numpy as np
import pytest

from residual_lib.analysis.agreement import agreement_z, random_set_z, textspan_omp_agreement
from residual_lib.analysis.pursuit import signals_from_array


def _dictionary(m=400, e=16, seed=0):
    """Clustered embeddings (20 themes), like a text dictionary with families of related descriptions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, e))
    return centres[rng.integers(0, 20, size=m)] + 0.5 * rng.normal(size=(m, e))


@pytest.mark.slow
def test_set_null_makes_z_a_standard_score_for_random_sets():
    """Oracle: 600 independently drawn random sets of |B| distinct entries; their Z has mean 0 and std 1."""
    e = _dictionary()
    rng = np.random.default_rng(1)
    a = [3, 50, 77, 120, 301]
    z = [agreement_z(e, a, rng.choice(400, 5, replace=False), null="set", n_null=1000) for _ in range(600)]
    assert abs(np.mean(z)) < 0.15
    assert abs(np.std(z) - 1) < 0.15


def test_set_null_is_deterministic_under_seed_and_varies_across_seeds():
    e = _dictionary()
    a, b = [1, 2, 3], [10, 11, 12, 13, 14]
    assert agreement_z(e, a, b, null="set", seed=5) == agreement_z(e, a, b, null="set", seed=5)
    assert agreement_z(e, a, b, null="set", seed=5) != agreement_z(e, a, b, null="set", seed=6)


def test_identical_sets_score_high_and_random_sets_score_low():
    e = _dictionary()
    rng = np.random.default_rng(2)
    sets = [rng.choice(400, 5, replace=False) for _ in range(60)]
    same = np.array([[agreement_z(e, s, s, null=null) for null in ("atom", "set")] for s in sets])
    rand = np.array([abs(agreement_z(e, s, rng.choice(400, 5, replace=False), null="set")) for s in sets])
    assert same.min() > 1.0
    assert rand.mean() < 1.0 < same[:, 0].mean() - 1


def test_random_sets_reach_a_paper_scale_z_away_from_zero_and_their_spread_is_the_set_nulls():
    """The paper's Z of a random set of 5 entries: centroids sit closer to c_A than single entries, so chance alone
    scores above 0; standardised with the set null's mean and sd (the same draws) it is a standard score."""
    e = _dictionary()
    a = [3, 50, 77, 120, 301]
    z = random_set_z(e, a, 5, n_null=1000, seed=3)
    assert z.shape == (1000,) and z.mean() > 0.2
    np.testing.assert_allclose((z - z.mean()) / z.std(), _set_standard_scores(e, a, n_null=1000, seed=3), atol=1e-9)
    with pytest.raises(ValueError, match="size=400"):
        random_set_z(e, a, 400)


def _set_standard_scores(e, a, n_null, seed):
    """Each of the set null's own draws scored by agreement_z(null="set") against the same draws."""
    rng = np.random.default_rng(seed)
    sets = np.argpartition(rng.random((n_null, len(e))), 4, axis=1)[:, :5]
    return np.array([agreement_z(e, a, s, null="set", n_null=n_null, seed=seed) for s in sets])


def test_identical_sets_reach_the_largest_possible_similarity():
    """sim(A, A) = 1 >= cos(c_A, e_j) for every entry j, so the paper's Z of a set with itself is never negative."""
    e = _dictionary()
    rng = np.random.default_rng(3)
    for _ in range(50):
        s = rng.choice(400, 5, replace=False)
        assert agreement_z(e, s, s) > 0


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
    with pytest.raises(ValueError, match=r"1 <= \|b\| < m"):
        agreement_z(e, [0], list(range(10)), null="set")


def test_textspan_omp_agreement_is_highest_for_the_heads_own_theme():
    """Each head varies along five atoms of one theme (a cluster) of the dictionary: both methods first pick that theme,
    so Z (k = 1) is high against the head's own OMP pick and low against any other head's."""
    rng = np.random.default_rng(4)
    e = 24
    centres = np.linalg.qr(rng.normal(size=(e, 6)))[0].T
    text = np.repeat(centres, 30, axis=0) + 0.15 * rng.normal(size=(180, e))
    heads = [rng.normal(size=(300, 5)) * [5, 4, 3, 2, 1] @ text[30 * t:30 * t + 5] + 0.1 * rng.normal(size=(300, e))
             for t in range(3)]
    sig = signals_from_array(np.stack(heads), names=["L3.H0", "L3.H1", "L3.H2"])
    table = textspan_omp_agreement(sig, text, k=1, pc=1, project=False, progress=False)
    assert table[["layer", "head"]].values.tolist() == [[3, 0], [3, 1], [3, 2]]
    for theme, row in zip(range(3), table.itertuples()):
        assert row.omp[0] // 30 == theme == row.textspan[0] // 30
        others = [agreement_z(text, row.textspan, o) for o in table.omp.drop(theme)]
        assert row.z > 1.5 > max(others) and row.z_set == pytest.approx(row.z, rel=0.1)  # one atom: both nulls sample the same spread
        # z's null spread: what 95% of random one-atom picks stay under on the paper's scale
        assert row.z_random95 == np.quantile(np.abs(random_set_z(text, row.textspan, 1)), 0.95) > 0
    with pytest.raises(ValueError, match="pc=30"):
        textspan_omp_agreement(sig, text, pc=30)
