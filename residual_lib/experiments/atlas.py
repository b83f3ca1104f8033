"""The head atlas: one browsable page per model of the build (`residual_lib.report.atlas`).

Two kinds of atlas, each reading caches another page extracts, so a build extracts nothing new for it:

- `models` (the toy CLIP): the reference caches are Figure 2's and 3's (same dataset, n and seed), the other
  datasets' are Figure 4's (n images, or the whole split when it is smaller); probes of the toy world's attributes;
- `network_models` (the real networks): the real-model page's caches (`real_model.model_caches` of the same settings),
  compared datasets named as that page names them; probes of the reference dataset's class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..store import cache
from ..report.atlas import head_atlas, top_overlap, use_scores, write_page
from ..store.cache import CacheKey
from ..data.datasets import dataset_spec
from ..models.registry import load_model
from ..report.plots_spectral import model_display
from . import real_model
from .base import CacheDtype, ComputeParams, Dictionary, ParamsError, Result, computes, in_range, nonempty, positive


# The pages that extract the caches the atlas reads: a parallel build starts it after them (book.runner)
AFTER = ("fig02_intrinsic_dimension", "fig03_textspan_vs_omp", "fig04_spectral_dataset_similarity", "real_model")


@dataclass(frozen=True)
class Params(ComputeParams):
    models: list[str] = field(default_factory=lambda: ["toy-clip"])  # one atlas per model
    reference_dataset: str = "toy-mixed"  # the heads' PCA, IDs, descriptions, thumbnails and probes
    datasets: list[str] = field(default_factory=lambda: [
        "toy-colour", "toy-shape", "toy-pattern", "toy-position", "toy-size", "toy-background",
        "toy-sketch", "toy-textured", "toy-digits", "toy-noise"])  # spectral similarity to each (may be empty)
    split: str = "train"
    n_reference: int | None = 2000  # images of the reference dataset (None or more than the split: all)
    n: int | None = 1000  # images of every other dataset (None or more than the split: all)
    seed: int = 0
    cache_dtype: CacheDtype = "float32"
    batch_size: int = 64
    device: str = "auto"
    dictionary: Dictionary = "toy"  # text dictionary of the descriptions (models with a text tower)
    k: int = 3  # descriptions per head and method, and per component
    n_pcs: int = 3  # principal components on each card
    n_thumbs: int = 4  # images at each end of a component
    thumbnail_size: int = 32  # px on the longer side (toy images are 32 px)
    threshold: float = 0.99  # linear ID (as Figure 2)
    discard_fraction: float = 0.1  # TwoNN (as Figure 2)
    evr_threshold: float = 0.9  # spectral similarity basis (as Figure 4)
    probe_attributes: bool = True  # the reference images have known attributes (toy world): probe each
    probe_test_fraction: float = 0.3
    top: int = 5  # heads compared between the description and the probe rankings
    # one atlas per real network, on the real-model page's setting and caches (empty: none)
    network_models: list[str] = field(default_factory=lambda: ["dinov2-s", "clip-b16-image-112"])
    network_reference_dataset: str = "fashion-mnist"  # labelled: the probes decode its class
    network_datasets: list[str] = field(default_factory=lambda: ["fashion-mnist/test", "sklearn-digits", "lfw-subset",
                                                              "random"])  # "dataset" or "dataset/split"
    network_n: int | None | list[int | None] = field(default_factory=lambda: [400, 100])  # one count, or one per model
    network_n_reference: int | None | list[int | None] = field(default_factory=lambda: [2000, 400])
    page_dir: str = "book/_static/atlas"  # where the pages are written (relative to the working directory)
    embed_images: bool = True  # thumbnails inside the page; false: files beside it, fetched per card (large models)

    def check(self) -> None:
        nonempty(self, "models")
        if self.network_models:
            self.real()  # the real-model page's rules on the same settings
        positive(self, "n", "n_reference", "batch_size", "k", "n_pcs", "n_thumbs", "thumbnail_size", "top")
        for name in ("threshold", "evr_threshold", "probe_test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ParamsError(f"parameter {name}={getattr(self, name)!r} must be in (0, 1)")
        in_range(self, "(0, 1)", "discard_fraction")  # TwoNN fits on what is left after the discard

    def real(self) -> real_model.Params:
        """The real networks' setting as the real-model page's parameters (whose caches the atlas reads)."""
        try:
            return real_model.Params(models=self.network_models, reference_dataset=self.network_reference_dataset,
                                     datasets=self.network_datasets, split=self.split, n=self.network_n,
                                     n_reference=self.network_n_reference, seed=self.seed, cache_dtype=self.cache_dtype)
        except ParamsError as err:
            raise ParamsError(f"network_* parameters (as the real-model page reads them): {err}") from None


def _n_for(dataset: str, split: str, wanted: int | None) -> int | None:
    """`wanted` images, or None (the whole split) when the split is not larger (Figure 4's rule)."""
    return None if wanted is None or dataset_spec(dataset).splits[split]["size"] <= wanted else wanted


def _model_caches(p: Params, model: str) -> list[CacheKey]:
    """One toy model's reference cache, then one per other dataset."""
    return [CacheKey(model, p.reference_dataset, p.split, _n_for(p.reference_dataset, p.split, p.n_reference), p.seed,
                     p.cache_dtype),
            *[CacheKey(model, d, p.split, _n_for(d, p.split, p.n), p.seed, p.cache_dtype) for d in p.datasets]]


def caches(p: Params) -> list[CacheKey]:
    """Per model of `models`, then of `network_models`: the reference cache, then one per other dataset."""
    return [k for m in p.models for k in _model_caches(p, m)] + (real_model.caches(p.real()) if p.network_models else [])


def _atlas(p: Params, name: str, real: bool) -> dict:
    from ..report.atlas import CacheImages
    from ..analysis.probe import cache_attributes
    from ..analysis.pursuit import text_atoms
    from ..data.text_dictionary import text_dictionary
    from ..toy.world import ATTRIBUTES

    model = load_model(name, device=p.device)
    keys = real_model.model_caches(p.real(), name) if real else _model_caches(p, name)
    names = [real_model.label(d, p.split) for d in p.network_datasets] if real else [k.dataset for k in keys[1:]]

    def extract(key: CacheKey):
        return cache.extract(model, key.dataset, device=p.device, batch_size=p.batch_size, **key.extract_kwargs())

    units = extract(keys[0])
    others = {label: extract(k) for label, k in zip(names, keys[1:])}
    texts = text_dictionary(p.dictionary) if model.has_text else None
    images = CacheImages(units)
    if real:  # real images carry their class, not the toy world's attributes
        labels, vocabulary = {"class": units.labels}, {"class": images.data.spec.class_names}
    else:
        labels = cache_attributes(units) if p.probe_attributes else None
        vocabulary = ATTRIBUTES if labels else None
    return head_atlas(units, model=name, model_display=model_display(name), images=images, others=others,
                      texts=texts, text_embeddings=text_atoms(model, texts) if texts else None,
                      dictionary=p.dictionary, labels=labels, vocabulary=vocabulary,
                      n_pcs=p.n_pcs, n_thumbs=p.n_thumbs, thumbnail_size=p.thumbnail_size, k=p.k,
                      threshold=p.threshold, discard_fraction=p.discard_fraction, evr_threshold=p.evr_threshold,
                      probe_test_fraction=p.probe_test_fraction, seed=p.seed, device=p.device)


@computes
def run(p: Params) -> Result:
    """One atlas document and page per model; tables of the heads and of the description-vs-probe check."""
    docs, pages, heads, checks = {}, {}, [], []
    for name, real in [(m, False) for m in p.models] + [(m, True) for m in p.network_models]:
        doc = docs[name] = _atlas(p, name, real)
        doc["settings"]["top"] = p.top  # the page compares the same number of heads as the table below it
        pages[name] = write_page(doc, Path(p.page_dir), embed_images=p.embed_images)
        heads.append(pd.DataFrame([{k: c[k] for k in ("unit", "layer", "head", "linear_id", "twonn_id", "ratio", "evr1")}
                                   for c in doc["heads"]]).assign(model=doc["model_display"]))
        for attribute in doc["attributes"] if doc["has_text"] else []:
            o = top_overlap(doc, attribute, p.top)
            checks.append({"model": doc["model_display"], "attribute": attribute, "heads_described": o["described"],
                           "top": o["top"], "top_by_description": ", ".join(o["top_description"]),
                           "top_by_probe": ", ".join(o["top_probe"]), "in_both": o["overlap"]})
    check = pd.DataFrame(checks, columns=["model", "attribute", "heads_described", "top", "top_by_description",
                                          "top_by_probe", "in_both"])
    return Result(p, tables={"heads": pd.concat(heads, ignore_index=True), "description_vs_probe": check},
                  findings=_findings(docs, pages, check), artifacts={"docs": docs, "pages": pages})


def page_weight(page: Path) -> int:
    """Bytes of a page and of the thumbnails written beside it."""
    thumbs = page.with_name(page.stem + "-thumbs")
    return page.stat().st_size + sum(f.stat().st_size for f in thumbs.glob("*.webp"))


def _findings(docs: dict, pages: dict, check: pd.DataFrame) -> dict:
    weights = {name: page_weight(page) for name, page in pages.items()}
    found = {
        "atlas_models": ", ".join(d["model_display"] for d in docs.values()),
        "atlas_n_heads": sum(len(d["heads"]) for d in docs.values()),
        "atlas_weight_kb": sum(weights.values()) / 1024,
        "atlas_largest_kb": max(weights.values()) / 1024,
        "atlas_images": sum(len(d["images"]) for d in docs.values()),
    }
    if len(check):
        text = (f"Over {len(check)} attribute checks (one per attribute and model), {int(check.in_both.sum())} of the "
                f"{int(check[['top', 'heads_described']].min(axis=1).sum())} top heads by description are also "
                f"top heads by probe.")
        for row in check[check.attribute == "colour"].itertuples():
            text += (f" For colour ({row.model}), the descriptions of {row.heads_described} heads use it; "
                     f"{row.in_both} of the top {min(row.top, row.heads_described)} by description are among the "
                     f"top {row.top} by probe.")
    else:
        text = "This build has no attribute labels or no text tower, so there is no check of words against probes."
    found["atlas_agreement"] = text
    return found


def ranking(result: Result, query: str, model: str | None = None) -> pd.DataFrame:
    """The page's search for one model (default: the first): heads ranked by description, with probe accuracy."""
    docs = result.artifacts["docs"]
    return use_scores(docs[model or next(iter(docs))], query)
