"""Images at the ends of a unit's principal components: scores against scikit-learn's PCA, cache rows mapped back
to dataset indices, and the thumbnail grid."""

import matplotlib
import numpy as np
import pytest
from sklearn.decomposition import PCA

from residual_lib.analysis.pc_extremes import dataset_rows, pc_extremes, pc_scores, plot_pc_extremes
from residual_lib.analysis.pca import fix_signs
from residual_lib.units.unit_set import UnitSet

matplotlib.use("Agg")


def unit_set(n: int = 60, seed: int = 0) -> tuple[UnitSet, np.ndarray]:
    """One head whose coordinates vary mostly along a known direction, by known per-sample amounts t."""
    rng = np.random.default_rng(seed)
    r, E = 4, 6
    basis = np.linalg.qr(rng.normal(size=(E, r)))[0].T  # (r, E) orthonormal rows
    t = rng.permutation(np.linspace(-10, 10, n))  # ends well apart from their neighbours
    second = rng.normal(size=n)  # a weaker, distinct second direction, so PC2 is well defined too
    coords = np.outer(t, [1.0, 0.5, 0.0, 0.0]) + np.outer(second, [0.0, 0.0, 2.0, 0.0]) + rng.normal(size=(n, r)) * 0.01
    offset = rng.normal(size=E)
    units = UnitSet(unit_coords={"L0.H0": coords}, unit_bases={"L0.H0": basis}, unit_offsets={"L0.H0": offset},
                    embedding=coords @ basis + offset, labels=np.arange(n) % 3)
    return units, t


@pytest.mark.parametrize("component", [0, 1])
def test_scores_are_sklearns_pca_of_the_output_space_with_the_libraries_sign(component):
    units, _ = unit_set()
    oracle = PCA(n_components=component + 1).fit(units.output_space("L0.H0"))
    sign = np.sign((fix_signs(oracle.components_) * oracle.components_).sum(-1))[component]
    expected = oracle.transform(units.output_space("L0.H0"))[:, component] * sign
    np.testing.assert_allclose(pc_scores(units, "L0.H0", component), expected, rtol=1e-5, atol=1e-5)


def test_extremes_are_the_samples_at_both_ends_of_the_main_direction():
    units, t = unit_set()
    low, high = pc_extremes(units, "L0.H0", k=5)
    ends = {frozenset(np.argsort(t)[:5]), frozenset(np.argsort(t)[-5:])}
    assert {frozenset(low), frozenset(high)} == ends  # which end is "high" is the PCA's sign convention
    scores = pc_scores(units, "L0.H0")
    assert list(scores[low]) == sorted(scores[low]) and list(scores[high]) == sorted(scores[high], reverse=True)
    with pytest.raises(ValueError, match="k=31"):
        pc_extremes(units, "L0.H0", k=31)


def test_cache_rows_map_back_to_the_dataset_split(tmp_path):
    """A seeded 20-image subset of a registered split: extremes index the split, and its labels agree."""
    from residual_lib import load_model
    from residual_lib.store.cache import extract, subsample
    from residual_lib.data.datasets import load_dataset

    model = load_model("standin-dino", device="cpu")
    cache = extract(model, "standin-mnist", "train", n=20, seed=3, device="cpu", root=tmp_path)
    rows = dataset_rows(cache)
    assert np.array_equal(rows, subsample(48, 20, 3))
    data = load_dataset("standin-mnist", "train")
    assert np.array_equal(data.targets[rows], cache.labels)
    low, high = pc_extremes(cache, "L11.H2", k=3)
    assert set(low) | set(high) <= set(rows) and not set(low) & set(high)
    scores = dict(zip(rows, pc_scores(cache, "L11.H2")))
    assert max(scores[i] for i in low) < min(scores[i] for i in high)


def test_thumbnail_grid_has_a_row_per_unit_and_class_names_as_titles():
    from residual_lib.data.datasets import load_dataset

    data = load_dataset("standin-mnist", "train")
    fig = plot_pc_extremes(data, {"L0.H0": (np.array([0, 1, 2]), np.array([3, 4, 5])),
                                  "L1.H1": (np.array([6, 7]), np.array([8, 9, 10]))})
    axes = np.array(fig.axes).reshape(2, 7)
    assert [a.get_title() for a in axes[0]] == [data.spec.class_names[data[i][1]] for i in (0, 1, 2)] + [""] + \
        [data.spec.class_names[data[i][1]] for i in (3, 4, 5)]
    assert not axes[1][2].axison and not axes[0][3].axison  # padding and the gap between the two ends
    assert axes[1][0].get_ylabel() == "L1.H1"
    with pytest.raises(ValueError, match="no units given"):
        plot_pc_extremes(data, {})
