"""ResiDual (RD, RD*, RDY), the linear aligner and head weights: exactness, PCA oracle, parameter counts."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from residual_lib.alignment.residual import Architecture, HeadWeights, LinearAligner, ResiDual, make_method
from unitset_factory import random_unitset

ARCH = Architecture(n_layers=2, n_heads=4, d_head=6, embed_dim=16)


@pytest.fixture(scope="module")
def sets():
    reference, clf = random_unitset(n=300, seed=10)
    task, _ = random_unitset(n=120, seed=11)
    return reference, task, clf


def test_rd_with_unit_scales_and_full_bases_reproduces_the_centred_output(sets):
    reference, task, _ = sets
    rd = ResiDual(ARCH, heads="all", mlps="all", emb="all").fit_reference(reference)
    out = rd(rd.features(task)).detach().numpy()
    np.testing.assert_allclose(out, task.embedding - reference.embedding.mean(0), atol=2e-4)
    rd.add_mean = True
    np.testing.assert_allclose(rd(rd.features(task)).detach().numpy(), task.embedding, atol=2e-4)


def test_rd_default_keeps_d_head_pcs_and_fixed_emb(sets):
    """Oracle: Eq. 6-7 written unit by unit in output space with scikit-learn's PCA and random lambdas."""
    reference, task, _ = sets
    rd = make_method("RD", ARCH).fit_reference(reference)
    with torch.no_grad():
        rd.scales.copy_(torch.rand(rd.scales.shape, generator=torch.Generator().manual_seed(0)) * 2)
    lambdas = rd.unit_scales()
    expected = task.output_space("EMB") - reference.output_space("EMB").mean(0)
    for unit in task.units:
        if unit == "EMB":
            continue
        sk = PCA().fit(reference.output_space(unit).astype(np.float64))
        phi = sk.components_[:len(lambdas[unit])]
        expected = expected + ((task.output_space(unit) - sk.mean_) @ phi.T * lambdas[unit]) @ phi
    np.testing.assert_allclose(rd(rd.features(task)).detach().numpy(), expected, atol=2e-4)
    assert all(len(lambdas[h]) == ARCH.d_head for h in task.heads)
    assert rd.n_params == ARCH.n_layers * ARCH.n_heads * ARCH.d_head + ARCH.n_layers * ARCH.embed_dim


def test_rd_star_keeps_heads_to_ninety_percent(sets):
    """Oracle: scikit-learn's PCA(n_components=0.9).n_components_ per head."""
    reference, task, _ = sets
    rd_star = make_method("RD*", ARCH)
    with pytest.raises(ValueError, match="fit_reference"):
        rd_star.n_params
    rd_star.fit_reference(reference)
    assert set(rd_star.unit_scales()) == set(task.heads)
    expected = sum(PCA(0.9).fit(reference.output_space(h)).n_components_ for h in task.heads)
    assert rd_star.n_params == expected


def test_rdy_with_unit_scales_is_the_centred_output(sets):
    reference, task, _ = sets
    rdy = make_method("RDY", ARCH).fit_reference(reference)
    np.testing.assert_allclose(rdy(rdy.features(task)).detach().numpy(),
                               task.embedding - reference.embedding.mean(0), atol=2e-4)
    assert rdy.n_params == ARCH.embed_dim


def test_lin_starts_at_identity_and_head_weights_at_heads_sum(sets):
    reference, task, _ = sets
    lin = LinearAligner(ARCH.embed_dim)
    np.testing.assert_allclose(lin(lin.features(task)).detach().numpy(), task.embedding, atol=1e-5)
    lin.fit_reference(reference)  # centred like RDY: the same starting point
    rdy = make_method("RDY", ARCH).fit_reference(reference)
    np.testing.assert_allclose(lin(lin.features(task)).detach().numpy(), rdy(rdy.features(task)).detach().numpy(),
                               atol=2e-4)
    o = HeadWeights(task.heads)
    np.testing.assert_allclose(o(o.features(task)).detach().numpy(),
                               sum(task.output_space(h) for h in task.heads), atol=1e-4)
    assert o.n_params == len(task.heads)


@pytest.mark.parametrize("name, rd, lin, rdy, o", [
    ("ViT-L-14", 43_008, 768 * 768 + 768, 768, 384),   # paper: 43k, 590k, 768
    ("ViT-B-32", 15_360, 512 * 512 + 512, 512, 144),   # paper: 15.4k, 262k, 512
])
def test_parameter_counts_from_open_clip_architectures(name, rd, lin, rdy, o):
    """Counts need no weights: the architecture comes from open_clip's config (random-init equivalent)."""
    arch = Architecture.from_open_clip(name)
    assert make_method("RD", arch).n_params == arch.n_layers * arch.n_heads * 64 + arch.n_layers * arch.embed_dim == rd
    assert make_method("Lin", arch).n_params == lin
    assert make_method("RDY", arch).n_params == rdy
    assert make_method("O", arch).n_params == o


def test_architecture_matches_a_random_initialised_open_clip_model():
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None, device="meta")
    arch = Architecture.from_open_clip("ViT-B-32")
    blocks = model.visual.transformer.resblocks
    assert (len(blocks), blocks[0].attn.num_heads, model.visual.proj.shape[1]) == (arch.n_layers, arch.n_heads, arch.embed_dim)


def test_bad_method_and_component_specs_are_named():
    with pytest.raises(ValueError, match="'RDX'.*RD\\*"):
        make_method("RDX", ARCH)
    with pytest.raises(ValueError, match="'most'"):
        ResiDual(ARCH, heads="most")


def test_lin_pytorch_init_is_nn_linears_default_seeded_and_uncentred():
    """The authors' Lin: nn.Linear's default init, U(-1/sqrt(E), 1/sqrt(E)) for weight and bias, on the raw output."""
    e = 16
    lin = LinearAligner(e, init="pytorch", seed=5)
    w, b = lin.linear.weight.detach(), lin.linear.bias.detach()
    bound = 1 / np.sqrt(e)
    assert w.abs().max() <= bound and b.abs().max() <= bound and not torch.equal(w, torch.eye(e))
    assert torch.equal(w, LinearAligner(e, init="pytorch", seed=5).linear.weight.detach())
    assert not torch.equal(w, LinearAligner(e, init="pytorch", seed=6).linear.weight.detach())
    units = random_unitset(embed_dim=e)[0]
    lin.fit_reference(units)
    assert torch.equal(lin.features(units), torch.as_tensor(units.embedding, dtype=torch.float32))
    with pytest.raises(ValueError, match="valid: identity, pytorch"):
        LinearAligner(e, init="zeros")


def _authors_adapter(x_units, bases, means, lambdas):
    """The authors' ResiDual.encode + sum (src/residual/nn/adapter.py at 004b0aa), transcribed: x_units (N, R, E),
    bases zero-padded (R, K, E), lambdas padded (R, K)."""
    inverse = torch.linalg.inv(bases @ bases.mT) @ bases if bases.shape[1] != bases.shape[2] else bases.mT
    coeffs = torch.einsum("nrd,rkd->nrk", x_units - means, bases * lambdas.unsqueeze(-1))
    return torch.einsum("nrk,rkd->nrd", coeffs, inverse).sum(1)


def _their_inputs(rd, task):
    """Their build_residual_spectral_adapter: every unit's full PCA basis, zero-padded; a pruned component's
    lambda is the padding value (0 here: dropped, as our truncation)."""
    units = [u for u, _ in rd.blocks]
    lambdas = rd.unit_scales()
    kmax = max(len(rd.pca.components_[u]) for u in units)
    bases = torch.zeros(len(units), kmax, ARCH.embed_dim, dtype=torch.float64)
    padded = torch.zeros(len(units), kmax, dtype=torch.float64)
    for i, u in enumerate(units):
        full = rd.pca.components_[u]
        bases[i, :len(full)] = torch.from_numpy(full)
        padded[i, :len(lambdas[u])] = torch.from_numpy(lambdas[u].astype(np.float64))
    x = torch.from_numpy(np.stack([task.output_space(u) for u in units], 1).astype(np.float64))
    means = torch.from_numpy(np.stack([rd.pca.mean_[u] for u in units]))
    return _authors_adapter(x, bases, means, padded).numpy()


@pytest.mark.parametrize("method", ["RD", "RD*"])
def test_authors_code_back_projection_is_their_adapter_and_differs_only_where_their_basis_is_square(sets, method):
    """Their RD (MLPs with all E components: a square padded basis) maps back with bases.mT, not through the
    orthonormal inverse; their RD* (heads only) agrees with ours. EMB, fixed in our RD, is left out of both."""
    reference, task, _ = sets
    ours = make_method(method, ARCH).fit_reference(reference)
    theirs = make_method(method, ARCH, back_projection="authors_code").fit_reference(reference)
    scales = torch.rand(ours.scales.shape, generator=torch.Generator().manual_seed(0)) * 2
    fixed = ours.features(task)[:, ours.components.shape[0]:].numpy()  # EMB's centred output (RD only)
    for rd in (ours, theirs):
        with torch.no_grad():
            rd.scales.copy_(scales)
    out_ours, out_theirs = (rd(rd.features(task)).detach().numpy() for rd in (ours, theirs))
    adapter = _their_inputs(theirs, task) + (fixed if fixed.size else 0)
    np.testing.assert_allclose(out_theirs, adapter, atol=5e-4)
    if method == "RD":
        assert np.abs(out_theirs - out_ours).max() > 0.1
    else:
        np.testing.assert_allclose(out_theirs, out_ours, atol=5e-4)
    with pytest.raises(ValueError, match="orthonormal, authors_code"):
        make_method(method, ARCH, back_projection="transpose")
