"""ResiDual (Eq. 6-7) and the other alignment methods of Section 4, as trainable modules on cached units.

Every method has the same three steps, so one training loop serves them all (`residual_lib.alignment.training`):

1. ``fit_reference(reference)``: learn what is fixed from the reference dataset's cache (PCA bases Phi and
   means mu for ResiDual; nothing for the others);
2. ``features(units) -> Tensor (N, ...)``: precompute, once per dataset, what an epoch needs (for ResiDual the
   PCA coefficients ``Phi (X - mu)`` of every unit, concatenated), so training never touches the backbone;
3. ``forward(features) -> (N, E)``: the transformed image representation, classified by the zero-shot
   classifier.

Methods: ``O`` (one weight per head, Table 1), ``RD`` (all PCs of all heads and MLPs), ``RD*`` (heads only,
PCs to 90% explained variance), ``RDY`` (ResiDual on the output embedding) and ``Lin`` (affine map of the
output embedding). Choices where the paper is silent, and why:

- mu is **not** added back (as in the authors' code): RD with every lambda = 1 and full bases returns the
  output centred on the reference mean, ``Y - mean_ref(Y)``; ``add_mean=True`` adds the means back.
- lambda starts at exactly 1 (``init_noise=0``): the authors add Gaussian noise, but each lambda has its own
  gradient, so there is no symmetry to break, and starting at 1 makes the untrained method equal to the
  (centred, truncated) model. ``init_noise=1`` is the authors' choice (``randn + 1``), which the training
  protocol "authors_code" sets (`training.protocol_config`).
- RD keeps the top ``d_head`` PCs of each head: a head's points span an affine subspace of dimension
  ``d_head + 2`` (the two extra directions carry the final LayerNorm's per-sample scalars), but the paper's
  parameter count (ViT-L/14: 24*16*64 + 24*768 = 43,008) keeps ``d_head`` per head; MLPs keep all ``E`` PCs.
  Dropped PCs are dropped from the sum (Phi truncated in Eq. 6). ``EMB`` (the class token after ``ln_pre``,
  the same for every image up to the LayerNorm scale) enters RD centred and unscaled, so it adds no parameter,
  which again matches the paper's count. RD* drops every unit but the heads (as in the coarse selection).
- Lin is ``W (y - mu) + b`` (``E^2 + E`` parameters): the paper's BLIP-L count, 65.8k = 256^2 + 256, has
  the bias; its 590k and 262k agree with either within its rounding. It is centred on the reference mean
  like RDY (see `LinearAligner`), an optimisation choice that leaves its family of maps unchanged. The
  authors' Lin is PyTorch's default-initialised ``nn.Linear`` on the uncentred output: ``init="pytorch"``
  (training protocol "authors_code").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from torch import Tensor, nn

from ..analysis.intrinsic_dim import linear_id
from ..analysis.pca import UnitPCA
from ..units.unit_set import is_head, parse_unit, unit_names

Components = Union[None, str, int, float]  # None: drop the unit; "fixed": all PCs, scale 1; "all"; k; variance
METHODS = ("O", "RD", "RD*", "RDY", "Lin")
LIN_INITS = ("identity", "pytorch")
# How ResiDual maps scaled PC coefficients back to the residual space: "orthonormal", c -> c Phi (the inverse of
# x -> x Phi^T for orthonormal rows); "authors_code", the authors' adapter (src/residual/nn/adapter.py, ResiDual),
# whose inverse is `bases.mT` whenever the zero-padded basis tensor is square (some unit keeps all E PCs: their
# RD) and inv(B B^T) B (= Phi, as here) otherwise (heads only: RD*).
BACK_PROJECTIONS = ("orthonormal", "authors_code")


@dataclass(frozen=True)
class Architecture:
    """The dimensions that decide every parameter count: L layers, H heads of d_head, E = embed_dim."""

    n_layers: int
    n_heads: int
    d_head: int
    embed_dim: int

    @classmethod
    def from_open_clip(cls, name: str) -> "Architecture":
        """Read the vision tower's dimensions from an open_clip model config (no weights needed)."""
        import open_clip

        config = open_clip.get_model_config(name)
        if config is None:
            raise KeyError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
        vision = config["vision_cfg"]
        head_width = vision.get("head_width", 64)
        return cls(n_layers=vision["layers"], n_heads=vision["width"] // head_width, d_head=head_width,
                   embed_dim=config["embed_dim"])

    @classmethod
    def from_model(cls, model) -> "Architecture":
        """The dimensions of a `ResidualModel` (or anything with the same four attributes)."""
        return cls(model.n_layers, model.n_heads, model.d_head, model.embed_dim)

    @property
    def units(self) -> list[str]:
        return unit_names(self.n_layers, self.n_heads)

    @property
    def heads(self) -> list[str]:
        return [u for u in self.units if is_head(u)]


class AlignmentMethod(nn.Module):
    """Base class: fit_reference -> features -> forward; `n_params` counts the trainable scalars."""

    name: str = ""

    def fit_reference(self, reference) -> "AlignmentMethod":
        """Learn the fixed parts from the reference dataset's units (default: nothing to learn)."""
        return self

    def features(self, units) -> Tensor:
        """(N, ...) what `forward` needs for every sample of a UnitSet/UnitCache."""
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class LinearAligner(AlignmentMethod):
    """Lin: ``W (y - mu) + b`` on the output embedding y, starting at the identity.

    mu is the reference mean of y once `fit_reference` has run (zero before): Lin then sees the same centred
    output as RDY and starts where RDY starts, so it contains RDY both as a family of maps and at
    initialisation. Uncentred, its bias would have to travel the length of the mean in optimizer-sized steps.
    """

    name = "Lin"

    def __init__(self, embed_dim: int, bias: bool = True, init: str = "identity", seed: int = 0):
        """init "identity": W = I, b = 0, centred on the reference mean; "pytorch": nn.Linear's default
        (uniform, seeded) initialisation on the uncentred output, as the authors' code."""
        super().__init__()
        if init not in LIN_INITS:
            raise ValueError(f"unknown Lin init {init!r}; valid: {', '.join(LIN_INITS)}")
        self.init = init
        self.linear = nn.Linear(embed_dim, embed_dim, bias=bias)
        if init == "identity":
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(embed_dim))
                if bias:
                    self.linear.bias.zero_()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.linear.reset_parameters()
        self.register_buffer("mean", torch.zeros(embed_dim))

    def fit_reference(self, reference) -> "LinearAligner":
        """Centre on the reference dataset's mean output embedding (init "identity" only)."""
        if self.init == "identity":
            self.mean = torch.from_numpy(np.asarray(reference.embedding, dtype=np.float64).mean(0).astype(np.float32))
        return self

    def features(self, units) -> Tensor:
        """(N, E) the model's own output embedding minus the reference mean."""
        return torch.as_tensor(np.asarray(units.embedding), dtype=torch.float32) - self.mean

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features)


class HeadWeights(AlignmentMethod):
    """O: ``sum_h w_h H_h`` over the heads (every other unit zero-ablated), one weight per head, starting at 1."""

    name = "O"

    def __init__(self, heads: list[str], init_noise: float = 0.0, seed: int = 0):
        super().__init__()
        self.heads = list(heads)
        noise = torch.randn(len(heads), generator=torch.Generator().manual_seed(seed)) * init_noise
        self.weights = nn.Parameter(1.0 + noise)
        self.register_buffer("bases", torch.empty(0))

    def features(self, units) -> Tensor:
        """(N, n_heads, r + 1) each head's coordinates with a trailing 1 that carries its offset."""
        missing = [h for h in self.heads if h not in units.units]
        if missing:
            raise KeyError(f"heads {missing[:5]} are not in this unit set (it has {len(units.heads)} heads)")
        rank = max(units.basis(h).shape[0] for h in self.heads)
        coords = np.zeros((units.n, len(self.heads), rank + 1), dtype=np.float32)
        bases = np.zeros((len(self.heads), rank + 1, units.embed_dim), dtype=np.float32)
        for i, h in enumerate(self.heads):
            r = units.basis(h).shape[0]
            coords[:, i, :r] = units.coords(h)
            coords[:, i, rank] = 1.0
            bases[i, :r] = units.basis(h)
            bases[i, rank] = units.offset(h)
        self.bases = torch.from_numpy(bases)
        return torch.from_numpy(coords)

    def forward(self, features: Tensor) -> Tensor:
        if self.bases.numel() == 0:
            raise RuntimeError("call features(units) first: it sets the heads' bases")
        weighted = features * self.weights[None, :, None]
        return weighted.reshape(len(features), -1) @ self.bases.reshape(-1, self.bases.shape[-1])


class ResiDual(AlignmentMethod):
    """``Y' = sum_u Phi_u^T diag(lambda_u) Phi_u (X_u - mu_u)`` (Eq. 6-7) with Phi, mu from a reference cache.

    Per unit kind (heads, mlps, emb) the components to keep: None drops the unit, "fixed" keeps all PCs with
    scale 1 (not trained), "all" trains all, an int k trains the top k, a float in (0, 1) trains the PCs up to
    that explained variance. ``on_output=True`` applies the transformation to the output embedding instead (RDY).
    Features are the coefficients of the trained PCs (N, K) followed by the summed fixed units (N, E), so a
    forward pass is one (N, K) x (K, E) product.
    """

    def __init__(self, arch: Architecture, heads: Components = None, mlps: Components = None,
                 emb: Components = None, on_output: bool = False, add_mean: bool = False,
                 init_noise: float = 0.0, seed: int = 0, name: str = "ResiDual", back_projection: str = "orthonormal"):
        super().__init__()
        for kind, spec in (("heads", heads), ("mlps", mlps), ("emb", emb)):
            _check_components(kind, spec)
        if back_projection not in BACK_PROJECTIONS:
            raise ValueError(f"unknown back_projection {back_projection!r}; valid: {', '.join(BACK_PROJECTIONS)}")
        self.back_projection = back_projection
        self.arch, self.on_output, self.add_mean = arch, on_output, add_mean
        self.spec = {"head": heads, "mlp": mlps, "emb": emb}
        self.init_noise, self.seed, self.name = init_noise, seed, name
        self.blocks: list[tuple[str, int]] = []  # (unit or "Y", number of trained PCs)
        self.fixed_units: list[str] = []
        self.pca: UnitPCA | None = None
        self.scales = nn.Parameter(torch.empty(0))
        self.register_buffer("components", torch.empty(0, arch.embed_dim))
        self.register_buffer("back", torch.empty(0, arch.embed_dim))  # row j: where coefficient j goes back to
        self.register_buffer("mean", torch.zeros(arch.embed_dim))

    def planned_components(self) -> dict[str, int] | None:
        """Trained PCs per unit as fixed by the architecture alone, or None when they depend on data."""
        if self.on_output:
            return {"Y": self.arch.embed_dim}
        plan = {}
        for unit in self.arch.units:
            spec = self.spec[parse_unit(unit)[0]]
            full = self.arch.d_head + 2 if is_head(unit) else self.arch.embed_dim
            if spec in (None, "fixed"):
                continue
            if isinstance(spec, float):
                return None
            plan[unit] = full if spec == "all" else min(spec, full)
        return plan

    @property
    def n_params(self) -> int:
        if self.blocks:
            return sum(k for _, k in self.blocks)
        plan = self.planned_components()
        if plan is None:
            raise ValueError(f"{self.name} keeps PCs up to an explained variance: call fit_reference(reference) "
                             f"before asking for its parameter count")
        return sum(plan.values())

    def fit_reference(self, reference) -> "ResiDual":
        """PCA (`UnitPCA`) of every kept unit, or of the output embedding, on the reference dataset's cache."""
        if self.on_output:
            self.pca = UnitPCA(device="cpu", progress=False).fit({"Y": np.asarray(reference.embedding)})
            self.blocks, self.fixed_units = [("Y", len(self.pca.explained_variance_["Y"]))], []
        else:
            if len(reference.heads) != self.arch.n_layers * self.arch.n_heads:
                raise ValueError(f"reference has {len(reference.heads)} heads, the architecture "
                                 f"{self.arch.n_layers}x{self.arch.n_heads}")
            kept = [u for u in reference.units if self.spec[parse_unit(u)[0]] is not None]
            self.pca = UnitPCA(units=kept, device="cpu", progress=False).fit(reference)
            self.fixed_units = [u for u in kept if self.spec[parse_unit(u)[0]] == "fixed"]
            self.blocks = [(u, self._n_kept(u, self.spec[parse_unit(u)[0]])) for u in kept if u not in self.fixed_units]
        trained = [self.pca.components_[u][:k] for u, k in self.blocks]
        self.components = torch.from_numpy(np.concatenate(trained).astype(np.float32))
        self.back = torch.from_numpy(np.concatenate(self._back(trained)).astype(np.float32))
        self.mean = torch.from_numpy(sum(self.pca.mean_.values()).astype(np.float32))
        noise = torch.randn(self.components.shape[0], generator=torch.Generator().manual_seed(self.seed))
        self.scales = nn.Parameter(1.0 + self.init_noise * noise)
        return self

    def _back(self, trained: list[np.ndarray]) -> list[np.ndarray]:
        """Each block's back-projection (k, E): Phi itself, or under "authors_code" with a square padded basis
        (the authors pad every unit's full PCA basis; square when some unit has all E PCs) that basis
        transposed, whose row j is column j of the unit's full basis: a unit's output then lands in its first
        coordinates, and an MLP's is (x - mu) Phi^T diag(lambda) Phi^T."""
        full = [self.pca.components_[u] for u, _ in self.blocks]
        if self.back_projection == "orthonormal" or self.on_output or max(len(f) for f in full) != self.arch.embed_dim:
            return trained
        out = []
        for phi, basis in zip(trained, full):
            back = np.zeros_like(phi)
            back[:, :len(basis)] = basis[:, :len(phi)].T
            out.append(back)
        return out

    def _n_kept(self, unit: str, spec: Components) -> int:
        evr = self.pca.explained_variance_ratio_[unit]
        if spec == "all":
            return len(evr)
        if isinstance(spec, float):
            return len(evr) if spec >= 1 else linear_id(evr, spec)
        return min(int(spec), len(evr))

    def features(self, units) -> Tensor:
        """(N, K [+ E]): coefficients Phi (X - mu) of the trained PCs, then (if any) the centred fixed units' sum."""
        if not self.blocks:
            raise RuntimeError(f"{self.name}: call fit_reference(reference) before features(units)")
        if self.on_output:
            centred = np.asarray(units.embedding, dtype=np.float64) - self.pca.mean_["Y"]
            return torch.from_numpy((centred @ self.pca.components_["Y"].T).astype(np.float32))
        parts = [self._coefficients(units, unit, self.pca.components_[unit][:k]) for unit, k in self.blocks]
        if self.fixed_units:
            parts.append(sum(units.output_space(u) - self.pca.mean_[u].astype(np.float32) for u in self.fixed_units))
        return torch.from_numpy(np.concatenate(parts, axis=1, dtype=np.float32))

    def _coefficients(self, units, unit: str, components: np.ndarray) -> np.ndarray:
        """(N, k) ``(X - mu) @ Phi^T`` without forming X: coords @ (basis Phi^T) + (offset - mu) Phi^T."""
        basis = np.asarray(units.basis(unit), dtype=np.float64)
        shift = (np.asarray(units.offset(unit), dtype=np.float64) - self.pca.mean_[unit]) @ components.T
        # The (N, r) x (r, k) product dominates; float32 is as precise as the stored coordinates.
        coords = np.asarray(units.coords(unit), dtype=np.float32)
        return coords @ (basis @ components.T).astype(np.float32) + shift.astype(np.float32)

    def forward(self, features: Tensor) -> Tensor:
        k = self.components.shape[0]
        out = (features[:, :k] * self.scales) @ self.back
        if features.shape[1] > k:
            out = out + features[:, k:]
        return out + self.mean if self.add_mean else out

    def unit_scales(self) -> dict[str, np.ndarray]:
        """The trained lambda of every unit (or of "Y"), in PC order."""
        values = self.scales.detach().cpu().numpy()
        offsets = np.cumsum([0] + [k for _, k in self.blocks])
        return {unit: values[a:b] for (unit, _), a, b in zip(self.blocks, offsets[:-1], offsets[1:])}


def _check_components(kind: str, spec: Components) -> None:
    ok = (spec is None or spec in ("fixed", "all") or (isinstance(spec, int) and not isinstance(spec, bool) and spec > 0)
          or (isinstance(spec, float) and 0 < spec <= 1))
    if not ok:
        raise ValueError(f"components for {kind}: {spec!r} is not one of None, 'fixed', 'all', a positive int "
                         f"or a variance fraction in (0, 1]")


def make_method(method: str, arch: Architecture, variance: float = 0.9, init_noise: float = 0.0,
                seed: int = 0, lin_init: str = "identity", back_projection: str = "orthonormal") -> AlignmentMethod:
    """One of METHODS for an architecture; ResiDual variants still need `fit_reference`.

    init_noise: lambda = 1 + init_noise * N(0, 1) (O, RD, RD*, RDY); lin_init: `LinearAligner`'s init;
    back_projection: RD's and RD*'s (`BACK_PROJECTIONS`).
    """
    if method == "O":
        return HeadWeights(arch.heads, init_noise=init_noise, seed=seed)
    if method == "RD":
        return ResiDual(arch, heads=arch.d_head, mlps="all", emb="fixed", init_noise=init_noise, seed=seed, name="RD",
                        back_projection=back_projection)
    if method == "RD*":
        return ResiDual(arch, heads=float(variance), init_noise=init_noise, seed=seed, name="RD*",
                        back_projection=back_projection)
    if method == "RDY":
        return ResiDual(arch, on_output=True, init_noise=init_noise, seed=seed, name="RDY")
    if method == "Lin":
        return LinearAligner(arch.embed_dim, init=lin_init, seed=seed)
    raise ValueError(f"unknown alignment method {method!r}; valid: {', '.join(METHODS)}")
