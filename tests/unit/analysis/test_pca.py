"""UnitPCA against scikit-learn's PCA (the oracle) and its own invariants."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from residual_lib.analysis.pca import UnitPCA, fix_signs
from residual_lib.units.synthetic import random_unit_set


@pytest.fixture(scope="module")
def units():
    return random_unit_set(n=300, n_layers=2, n_heads=3, r=10, embed_dim=32, seed=1)


@pytest.fixture(scope="module")
def fitted(units):
    return UnitPCA(device="cpu", progress=False).fit(units)


def test_matches_sklearn_pca_in_output_space(units, fitted):
    """Oracle: sklearn PCA on each unit's output-space points; components equal up to sign, variances equal."""
    for u in units.units:
        x = units.output_space(u).astype(np.float64)
        k = len(fitted.explained_variance_[u])
        ref = PCA(n_components=k, svd_solver="full").fit(x)
        np.testing.assert_allclose(fitted.explained_variance_[u], ref.explained_variance_, rtol=1e-4, atol=1e-8)
        np.testing.assert_allclose(fitted.explained_variance_ratio_[u], ref.explained_variance_ratio_, rtol=1e-4, atol=1e-8)
        np.testing.assert_allclose(fitted.mean_[u], ref.mean_, atol=1e-4)
        # Leading components have well-separated variances, so they are determined up to sign.
        lead = 4
        np.testing.assert_allclose(fitted.components_[u][:lead], fix_signs(ref.components_[:lead]), atol=1e-3)


def test_head_components_live_in_head_subspace(units, fitted):
    for u in units.heads:
        comps, basis = fitted.components_[u], units.basis(u).astype(np.float64)
        assert comps.shape == (10, 32)
        np.testing.assert_allclose(comps @ basis.T @ basis, comps, atol=1e-5)
        np.testing.assert_allclose(comps @ comps.T, np.eye(10), atol=1e-6)
        np.testing.assert_allclose(fitted.coord_components_[u] @ basis, comps, atol=1e-6)


def test_dict_input_equals_unit_set_input(units, fitted):
    plain = {u: units.output_space(u) for u in units.heads[:2]}
    other = UnitPCA(device="cpu", progress=False, n_components=5).fit(plain)
    for u in plain:
        np.testing.assert_allclose(other.explained_variance_[u], fitted.explained_variance_[u][:5], rtol=1e-4)
        np.testing.assert_allclose(other.components_[u], fitted.components_[u][:5], atol=1e-3)


def test_signs_are_fixed_so_negated_data_gives_the_same_components(units):
    a = units.output_space("L1.H2")
    p1 = UnitPCA(device="cpu", progress=False).fit({"u": a})
    p2 = UnitPCA(device="cpu", progress=False).fit({"u": -a})
    np.testing.assert_allclose(p1.components_["u"][:4], p2.components_["u"][:4], atol=1e-6)
    top = np.abs(p1.components_["u"]).argmax(axis=1)
    assert (p1.components_["u"][np.arange(len(top)), top] > 0).all()


def test_batch_size_does_not_change_results(units, fitted):
    small = UnitPCA(device="cpu", progress=False, batch_size=1).fit(units)
    for u in units.units:
        np.testing.assert_allclose(small.explained_variance_[u], fitted.explained_variance_[u], rtol=1e-10)


def test_bad_inputs_name_the_problem(units):
    with pytest.raises(KeyError, match="L9.H9"):
        UnitPCA(units=["L9.H9"], progress=False).fit(units)
    with pytest.raises(ValueError, match="n_components"):
        UnitPCA(n_components=0, progress=False).fit(units)
    with pytest.raises(ValueError, match="expected \\(n, d\\)"):
        UnitPCA(progress=False).fit({"u": np.zeros(5)})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu(units, fitted):
    on_gpu = UnitPCA(device="cuda", progress=False).fit(units)
    for u in units.units:
        np.testing.assert_allclose(on_gpu.explained_variance_[u], fitted.explained_variance_[u], rtol=1e-8)
        np.testing.assert_allclose(on_gpu.components_[u][:4], fitted.components_[u][:4], atol=1e-6)
