"""TextSpan, SOMP and OMP: oracles (scikit-learn OMP, literal transcriptions of Algorithms 1-2) and App. A.2."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import orthogonal_mp

from residual_lib.analysis.pursuit import (compare_textspan_somp, omp, project_dictionary, signals_from_array,
                                  signals_from_units, somp, text_atoms, textspan)
from residual_lib.units.unit_set import UnitSet, head_name

torch.set_num_threads(1)


def _heads(n_heads=6, n=200, r=10, e=32, seed=0) -> UnitSet:
    """A unit set of low-rank affine heads shaped like a cache: coords (n, r), orthonormal basis (r, E)."""
    rng = np.random.default_rng(seed)
    names = [head_name(0, h) for h in range(n_heads)]
    coords = {u: rng.normal(size=(n, r)) * np.linspace(3, 0.3, r) for u in names}
    bases = {u: np.linalg.qr(rng.normal(size=(e, r)))[0].T for u in names}
    offsets = {u: rng.normal(size=e) for u in names}
    emb = sum(coords[u] @ bases[u] + offsets[u] for u in names)
    return UnitSet(coords, bases, offsets, emb, np.zeros(n, dtype=int))


def _textspan_literal(x, d, k):
    """Algorithm 1 transcribed line by line (numpy, dense): variance of projections on the current atoms."""
    r, d, picked = x - x.mean(0), d.copy(), []
    for _ in range(k):
        score = (r @ d.T).var(axis=0)
        score[picked] = -np.inf
        p = int(score.argmax())
        picked.append(p)
        t = d[p] / np.linalg.norm(d[p])
        r = r - np.outer(r @ t, t)
        d = d - np.outer(d @ t, t)
    return picked, r


def _somp_literal(x, d, k, norm):
    """Algorithm 2 transcribed line by line (numpy, dense): aggregated |D R^T| rows, least-squares refit."""
    x = x - x.mean(0)
    r, picked = x, []
    for _ in range(k):
        score = np.linalg.norm(d @ r.T, ord=norm, axis=1)
        score[picked] = -np.inf
        picked.append(int(score.argmax()))
        w = np.linalg.lstsq(d[picked].T, x.T, rcond=None)[0].T
        r = x - w @ d[picked]
    return picked, r


def test_textspan_matches_algorithm_1_transcription():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 80, 16)) @ rng.normal(size=(16, 16))
    d = rng.normal(size=(50, 16))
    got = textspan(x, d, 6, return_residual=True, progress=False)
    for h in range(3):
        atoms, resid = _textspan_literal(x[h], d, 6)
        assert got.atoms[h].tolist() == atoms
        np.testing.assert_allclose(got.residual[h], resid, atol=1e-9)


@pytest.mark.parametrize("aggregate,norm", [("l2", 2), ("l1", 1)])
def test_somp_matches_algorithm_2_transcription(aggregate, norm):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 60, 12))
    d = rng.normal(size=(40, 12))
    got = somp(x, d, 5, aggregate=aggregate, return_residual=True, progress=False)
    for h in range(3):
        atoms, resid = _somp_literal(x[h], d, 5, norm)
        assert got.atoms[h].tolist() == atoms
        np.testing.assert_allclose(got.residual[h], resid, atol=1e-9)


def test_omp_matches_sklearn_orthogonal_mp():
    """Oracle: scikit-learn's orthogonal_mp on the normalised dictionary (support and coefficients)."""
    rng = np.random.default_rng(3)
    d = rng.normal(size=(120, 24))
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    y = rng.normal(size=(5, 24))
    atoms, coef = omp(y, d, 6)
    ref = orthogonal_mp(dn.T, y.T, n_nonzero_coefs=6)  # (m, H)
    for h in range(5):
        assert set(atoms[h]) == set(np.flatnonzero(ref[:, h]))
        np.testing.assert_allclose(coef[h], ref[atoms[h], h], rtol=1e-8, atol=1e-10)


def test_omp_recovers_a_planted_sparse_code():
    rng = np.random.default_rng(4)
    d = rng.normal(size=(200, 64))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    y = 3 * d[17] - 2 * d[101] + 1.5 * d[5]
    atoms, coef = omp(y, d, 3)
    assert sorted(atoms[0]) == [5, 17, 101]
    np.testing.assert_allclose(dict(zip(atoms[0], coef[0]))[101], -2, atol=1e-9)


def test_somp_on_one_uncentred_signal_is_omp():
    """SOMP on a single sample (n = 1, not centred) with unit atoms is OMP; oracle: scikit-learn."""
    rng = np.random.default_rng(5)
    d = rng.normal(size=(80, 20))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    y = rng.normal(size=20)
    got = somp(signals_from_array(y[None], center=False), d, 4, aggregate="l1", progress=False)
    ref = orthogonal_mp(d.T, y, n_nonzero_coefs=4)
    assert set(got.atoms[0]) == set(np.flatnonzero(ref))


def test_appendix_a2_textspan_equals_l2_somp_on_random_data():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 150, 40)) @ rng.normal(size=(40, 40))
    d = rng.normal(size=(300, 40))
    ts = textspan(x, d, 10, return_residual=True, progress=False)
    sp = somp(x, d, 10, aggregate="l2", return_residual=True, progress=False)
    np.testing.assert_array_equal(ts.atoms, sp.atoms)
    np.testing.assert_allclose(ts.residual, sp.residual, atol=1e-5)
    np.testing.assert_allclose(ts.explained, sp.explained, atol=1e-10)


def test_appendix_a2_on_cached_heads_with_projected_dictionary():
    """The theorem on cache-shaped heads (coords + basis) and TextSpan's span-projected dictionary."""
    units = _heads()
    sig = signals_from_units(units, units.heads)
    d = project_dictionary(np.random.default_rng(7).normal(size=(200, 32)), sig)
    ts = textspan(sig, d, 8, return_residual=True, progress=False)
    sp = somp(sig, d, 8, aggregate="l2", return_residual=True, progress=False)
    np.testing.assert_array_equal(ts.atoms, sp.atoms)
    np.testing.assert_allclose(ts.residual, sp.residual, atol=1e-5)


def test_signals_from_units_factor_the_centred_output_space():
    units = _heads(n_heads=2)
    sig = signals_from_units(units, units.heads)
    for i, u in enumerate(units.heads):
        x = units.output_space(u).astype(np.float64)
        np.testing.assert_allclose(sig.dense()[i], x - x.mean(0), atol=1e-5)
        np.testing.assert_allclose(sig.mean[i].numpy(), x.mean(0), atol=1e-5)


def test_components_are_the_principal_directions():
    """Oracle: numpy SVD of the centred dense samples (directions equal up to sign)."""
    x = np.random.default_rng(8).normal(size=(2, 100, 12)) * np.linspace(4, 1, 12)
    comps = signals_from_array(x).components(3)
    for h in range(2):
        vt = np.linalg.svd(x[h] - x[h].mean(0), full_matrices=False)[2][:3]
        np.testing.assert_allclose(np.abs((comps[h] * vt).sum(1)), 1, atol=1e-9)


def test_l1_somp_can_depart_from_textspan():
    """The authors' L1 criterion is a different criterion: on heavy-tailed samples it picks other atoms."""
    rng = np.random.default_rng(9)
    x = rng.standard_t(1.5, size=(8, 200, 16))
    d = rng.normal(size=(100, 16))
    ts, l1 = textspan(x, d, 5, progress=False), somp(x, d, 5, aggregate="l1", progress=False)
    assert (ts.atoms != l1.atoms).any()


def test_explained_energy_grows_to_one_when_atoms_span_the_space():
    x = np.random.default_rng(10).normal(size=(50, 6))
    got = textspan(x, np.eye(6), 6, progress=False)
    assert np.all(np.diff(got.explained[0]) >= -1e-12)
    np.testing.assert_allclose(got.explained[0, -1], 1, atol=1e-12)


def test_deterministic_and_texts():
    x = np.random.default_rng(11).normal(size=(40, 8))
    d = np.random.default_rng(12).normal(size=(30, 8))
    a, b = textspan(x, d, 3, progress=False), textspan(x, d, 3, progress=False)
    np.testing.assert_array_equal(a.atoms, b.atoms)
    words = [f"t{i}" for i in range(30)]
    assert a.texts(words)["unit0"] == [words[j] for j in a.atoms[0]]


def test_bad_inputs_name_the_valid_values():
    x = np.zeros((10, 8))
    with pytest.raises(ValueError, match="aggregate='max'; valid: l2, l1"):
        somp(x, np.eye(8), 2, aggregate="max")
    with pytest.raises(ValueError, match=r"expected \(m, 8\)"):
        textspan(x, np.eye(5), 2)
    with pytest.raises(ValueError, match="k=9"):
        textspan(x, np.eye(8), 9)
    with pytest.raises(ValueError, match="k=0"):
        omp(x[0], np.eye(8), 0)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """A real unit cache: a small random-init open_clip ViT run on random images."""
    from unit_fixtures import RandomImages, tiny_model

    from residual_lib.store.cache import extract

    return extract(tiny_model(), RandomImages(96), n=None, device="cpu", shard_size=64,
                   root=tmp_path_factory.mktemp("cache"))


def test_text_atoms_are_unit_norm_embeddings():
    from unit_fixtures import tiny_model

    atoms = text_atoms(tiny_model(), ["a red circle", "a blue square", "a dog"], batch_size=2)
    assert atoms.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=1), 1, atol=1e-12)


@pytest.mark.slow
def test_appendix_a2_on_real_cached_heads(real_cache):
    """The theorem on every head of a real cache, raw and span-projected dictionaries; L1 reported apart."""
    sig = signals_from_units(real_cache, real_cache.heads)
    text = np.random.default_rng(13).normal(size=(150, real_cache.embed_dim))
    for dictionary in (text, project_dictionary(text, sig)):
        table = compare_textspan_somp(sig, dictionary, 6, progress=False)
        assert table.same_atoms.all()
        assert table.max_residual_diff.max() < 1e-5
        assert (table.residual_norm > 1e-3).all()  # the residual compared is not trivially zero
        assert table.l1_first_departure.between(0, 6).all()


@pytest.mark.slow
def test_appendix_a2_on_the_toy_clip_heads_and_its_text_tower(tmp_path):
    """The theorem on the trained toy CLIP's heads with its own text embeddings of the toy dictionary."""
    from residual_lib.store.cache import extract
    from residual_lib.models.registry import load_model
    from residual_lib.paths import MANIFESTS
    from residual_lib.data.text_dictionary import text_dictionary

    if not (MANIFESTS / "models" / "toy-clip-smoke.yaml").exists():
        pytest.skip("toy-clip-smoke is not registered in this checkout")
    model = load_model("toy-clip-smoke", device="cpu")
    units = extract(model, "toy-mixed", split="val", n=64, device="cpu", root=tmp_path)
    sig = signals_from_units(units, units.heads)
    atoms = text_atoms(model, text_dictionary("toy"))
    table = compare_textspan_somp(sig, project_dictionary(atoms, sig), 5, progress=False)
    assert table.same_atoms.all()
    assert table.max_residual_diff.max() < 1e-5


def test_projection_on_centred_and_uncentred_spans_by_hand():
    """X rows (1, 0, 5), (-1, 0, 5): the centred span is e1; the uncentred X has right singular vectors
    e3 (sigma^2 = 50) and e1 (sigma^2 = 2). The atom (1, 1, 1)/sqrt(3) projects to (1, 0, 0)/sqrt(3) on the
    centred span, (0, 0, 1)/sqrt(3) on the uncentred top-1 and (1, 0, 1)/sqrt(3) on the uncentred top-2."""
    sig = signals_from_array(np.array([[1.0, 0, 5], [-1.0, 0, 5]]), device="cpu")
    atom = np.ones((1, 3)) / np.sqrt(3)
    np.testing.assert_allclose(project_dictionary(atom, sig)[0], [[1 / np.sqrt(3), 0, 0]], atol=1e-12)
    np.testing.assert_allclose(project_dictionary(atom, sig, rank=1, center=False)[0], [[0, 0, 1 / np.sqrt(3)]],
                               atol=1e-12)
    np.testing.assert_allclose(project_dictionary(atom, sig, center=False)[0], [[1 / np.sqrt(3), 0, 1 / np.sqrt(3)]],
                               atol=1e-12)


def test_uncentred_projection_oracle_numpy_svd_of_x():
    """Oracle: numpy's SVD of the dense uncentred samples, top-r right singular vectors."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 12)) + rng.normal(size=12) * 3
    d = rng.normal(size=(9, 12))
    vh = np.linalg.svd(x, full_matrices=False)[2][:4]
    got = project_dictionary(d, signals_from_array(x, device="cpu"), rank=4, center=False)[0]
    np.testing.assert_allclose(got, d @ vh.T @ vh, atol=1e-10)


def test_omp_with_and_without_renormalising_atoms_by_hand():
    """y = (1, 0); atoms d0 = (0.6, 0.8) (unit) and d1 = (0.5, 0) (a projection kept half its length).
    Renormalised: |<y, d1>| / 0.5 = 1 > 0.6, picks d1. As given: 0.6 > 0.5, picks d0 (the authors')."""
    y, d = np.array([1.0, 0.0]), np.array([[0.6, 0.8], [0.5, 0.0]])
    assert omp(y, d, 1, device="cpu")[0][0, 0] == 1
    atoms, coef = omp(y, d, 1, normalize=False, device="cpu")
    assert atoms[0, 0] == 0 and coef[0, 0] == pytest.approx(0.6)  # least squares on d0: <y, d0> / |d0|^2
    unit = d / np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_array_equal(omp(y, unit, 2, device="cpu")[0], omp(y, unit, 2, normalize=False, device="cpu")[0])


def test_appendix_a2_holds_with_the_authors_uncentred_projection():
    """The theorem needs only the same dictionary for both: the uncentred span's projection qualifies too."""
    units = _heads()
    sig = signals_from_units(units, units.heads)
    d = project_dictionary(np.random.default_rng(7).normal(size=(200, 32)), sig, center=False)
    ts = textspan(sig, d, 8, return_residual=True, progress=False)
    sp = somp(sig, d, 8, aggregate="l2", return_residual=True, progress=False)
    np.testing.assert_array_equal(ts.atoms, sp.atoms)
    np.testing.assert_allclose(ts.residual, sp.residual, atol=1e-5)
