"""A head atlas: everything the book knows about each attention head of one model, as one JSON document.

Per head (`L{l}.H{h}`) of a unit cache of the reference dataset:

- linear ID, TwoNN ID, their ratio, EVR1 and the whole explained-variance spectrum (`intrinsic_dim`, `pca`);
- its first `n_pcs` principal components, each with the `n_thumbs` images at either end (highest and
  lowest score along the component) and, where the model has a text tower, OMP's descriptions of the
  component (the paper's per-component description, Fig 3), each signed: + points to the high end;
- where the model has a text tower, TextSpan's and SOMP's descriptions of the whole head (the dictionary
  projected on the head's span first, as Gandelsman et al. do), each with the share of the head's
  variance it adds and the component (and end) its text embedding lines up with best, so a card can put
  it next to that component. SOMP aggregates with L1, the authors' variant: with L2 it picks exactly
  TextSpan's descriptions (Appendix A.2), so only L1 can tell the reader something new;
- its spectral similarity (Eq. 4) to the same head on each other dataset (`spectral`);
- where the dataset's images have known attributes (the toy world), a linear probe's held-out accuracy
  for every attribute (`probe`).

Images are stored once, as small base64 WebP pictures in `images`, and referred to by index, because the same
image sits at the end of many components. `use_scores` ranks heads by how much of their variance the
descriptions that use a word explain; the atlas page (`atlas_page`) runs the same rule in JavaScript.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from collections.abc import Sequence
from typing import Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..analysis.intrinsic_dim import unit_intrinsic_dimensions
from ..files import atomic_directory, write_text
from ..analysis.pca import UnitPCA
from ..analysis.probe import probe_accuracy
from ..analysis.pursuit import omp, project_dictionary, signals_from_units, somp, textspan
from ..analysis.spectral import unit_similarities
from ..units.unit_set import parse_unit

FORMAT = 1
QUANTITIES = {"linear_id": "linear ID", "twonn_id": "TwoNN ID", "ratio": "ratio L / N", "evr1": "EVR of PC1"}
# Query words that name an attribute in another spelling.
SYNONYMS = {"color": "colour", "colours": "colour", "colors": "colour", "shapes": "shape", "patterns": "pattern",
            "positions": "position", "sizes": "size", "backgrounds": "background", "location": "position"}
_DIGITS = 4  # decimals kept in the JSON: more than any card shows, far fewer bytes than float64 text


def _round(x) -> float | None:
    """A JSON number with _DIGITS decimals; None (null) where the value is not finite."""
    x = float(x)
    return round(x, _DIGITS) if np.isfinite(x) else None


class CacheImages(Sequence):
    """The images of a `UnitCache`'s samples, in cache order, read from its dataset only when indexed.

    A paper-scale cache holds 80,000 images and a page shows a few thousand, so none is read in advance.
    """

    def __init__(self, units):
        from ..store.cache import subsample
        from ..data.datasets import load_dataset

        p = units.manifest["params"]
        self.data = load_dataset(p["dataset"], p["split"])
        self.rows = subsample(len(self.data), p["n_requested"], p["seed"])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.data[int(self.rows[i])][0]


def thumbnail(image, size: int) -> str:
    """An image (tensor or array (3, H, W) / (H, W, 3), or PIL) as a base64 WebP at most `size` px on a side."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        a = np.asarray(image)
        if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
            a = a.transpose(1, 2, 0)
        if a.dtype != np.uint8:
            a = np.clip(a * (255 if a.max() <= 1 else 1), 0, 255).astype(np.uint8)
        image = Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a)
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buf = io.BytesIO()
    # WebP at quality 90: a 32 px toy image takes ~440 bytes against ~2,200 as PNG (its pixel noise defeats
    # PNG's compression), and thumbnails are most of a page's weight.
    image.save(buf, format="WEBP", quality=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _ends(scores: np.ndarray, n_thumbs: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices at the high and the low end of one component's scores (n,), most extreme first."""
    order = np.argsort(scores, kind="stable")
    return order[::-1][:n_thumbs], order[:n_thumbs]


def _texts(atoms: np.ndarray, explained: np.ndarray, texts: Sequence[str], directions: np.ndarray,
           dictionary: np.ndarray) -> list[dict]:
    """One head's picks: text, the share of variance it adds, and the component (1-based) and end it lines up with."""
    gains = np.diff(np.concatenate([[0.0], explained]))
    out = []
    for j, gain in zip(atoms, gains):
        d = dictionary[j]
        cos = directions @ d / max(np.linalg.norm(d), 1e-12)
        best = int(np.abs(cos).argmax())
        out.append({"text": texts[j], "gain": _round(gain), "pc": best + 1, "sign": 1 if cos[best] >= 0 else -1})
    return out


def head_atlas(units, *, model: str, model_display: str | None = None, images: Sequence | None = None,
               others: Mapping[str, object] | None = None, texts: Sequence[str] | None = None,
               text_embeddings: np.ndarray | None = None, dictionary: str | None = None,
               labels: Mapping[str, np.ndarray] | None = None,
               vocabulary: Mapping[str, Sequence[str]] | None = None, n_pcs: int = 3, n_thumbs: int = 4,
               thumbnail_size: int = 32, k: int = 3, threshold: float = 0.99, discard_fraction: float = 0.1,
               evr_threshold: float = 0.9, probe_test_fraction: float = 0.3, seed: int = 0,
               device: str = "auto", progress: bool = True) -> dict:
    """The atlas document of one model's heads (module docstring) as a JSON-ready dict.

    units: the reference dataset's `UnitCache` (or `UnitSet`); images: the image of each of its samples,
    in cache order (None: no thumbnails); others: {dataset: unit set of the same model} for spectral
    similarity; texts, text_embeddings (m, E): the dictionary and its unit-norm embeddings (None: no
    descriptions); labels: {attribute: (n,) values} for the probes; vocabulary: {attribute: value words}
    for the search (the attribute's values as labels index them).
    """
    if (texts is None) != (text_embeddings is None):
        raise ValueError("pass both texts and text_embeddings (a model with a text tower) or neither")
    if min(n_pcs, n_thumbs, k, thumbnail_size) < 1:
        raise ValueError(f"n_pcs={n_pcs}, n_thumbs={n_thumbs}, k={k}, thumbnail_size={thumbnail_size}: each must be >= 1")
    if images is not None and len(images) != units.n:
        raise ValueError(f"{len(images)} images for a unit set of {units.n} samples; pass one per sample, in order")
    heads = list(units.heads)
    pca = UnitPCA(units=heads, device=device, progress=progress).fit(units)
    ids = unit_intrinsic_dimensions(units, pca=pca, threshold=threshold, discard_fraction=discard_fraction,
                                    device=device, progress=progress).set_index("unit")
    cards = {u: {"unit": u, "layer": int(ids.loc[u, "layer"]), "head": int(ids.loc[u, "head"]),
                 **{q: _round(ids.loc[u, q]) for q in QUANTITIES}, "linear_id": int(ids.loc[u, "linear_id"]),
                 "spectrum": [_round(v) for v in pca.explained_variance_ratio_[u]]} for u in heads}

    image_index: dict[int, int] = {}
    for u in tqdm(heads, desc="components", disable=not progress):
        c = np.asarray(units.coords(u), dtype=np.float64)
        n = min(n_pcs, len(pca.explained_variance_ratio_[u]))
        scores = (c - c.mean(0)) @ pca.coord_components_[u][:n].T
        pcs = []
        for j in range(n):
            hi, lo = _ends(scores[:, j], n_thumbs)
            pc = {"pc": j + 1, "evr": _round(pca.explained_variance_ratio_[u][j])}
            if images is not None:
                pc["plus"] = [image_index.setdefault(int(i), len(image_index)) for i in hi]
                pc["minus"] = [image_index.setdefault(int(i), len(image_index)) for i in lo]
            pcs.append(pc)
        cards[u]["pcs"] = pcs

    if texts is not None:
        _describe(units, heads, pca, cards, list(texts), np.asarray(text_embeddings), n_pcs, k, device, progress)
    if others:
        for name, other in tqdm(others.items(), desc="spectral similarity", disable=not progress):
            theirs = UnitPCA(units=heads, device=device, progress=False).fit(other)
            sims = unit_similarities(pca, theirs, heads, evr_threshold=evr_threshold, device=device)
            for u, s in zip(sims.unit, sims.similarity):
                cards[u].setdefault("similarity", {})[name] = _round(s)
    if labels:
        acc = probe_accuracy(units, labels, heads, test_fraction=probe_test_fraction, seed=seed, progress=progress)
        for row in acc.itertuples():
            cards[row.unit].setdefault("probe", {})[row.attribute] = {
                "accuracy": _round(row.accuracy), "chance": _round(row.chance),
                "skill": _round((row.accuracy - row.chance) / (1 - row.chance))}

    order = sorted(image_index, key=image_index.get)
    layers = sorted({c["layer"] for c in cards.values()})
    return {
        "format": FORMAT, "model": model, "model_display": model_display or model,
        "dataset": units.manifest["params"]["dataset"] if hasattr(units, "manifest") else None,
        "split": units.manifest["params"]["split"] if hasattr(units, "manifest") else None,
        "n": int(units.n), "n_layers": len(layers), "n_heads": max(c["head"] for c in cards.values()) + 1,
        "has_text": texts is not None, "dictionary": dictionary if texts is not None else None,
        "datasets": list(others or {}), "attributes": list(labels or {}),
        "vocabulary": {a: list(v) for a, v in (vocabulary or {}).items()},
        "settings": {"n_pcs": n_pcs, "n_thumbs": n_thumbs, "k": k, "threshold": threshold,
                     "discard_fraction": discard_fraction, "evr_threshold": evr_threshold,
                     "probe_test_fraction": probe_test_fraction, "seed": seed, "somp_aggregate": "l1"},
        "images": [thumbnail(images[i], thumbnail_size) for i in order] if images is not None else [],
        "heads": [cards[u] for u in heads],
    }


def _describe(units, heads: list[str], pca: UnitPCA, cards: dict, texts: list[str], embeddings: np.ndarray,
              n_pcs: int, k: int, device: str, progress: bool) -> None:
    """TextSpan, SOMP (L1) and per-component OMP descriptions into the cards, one layer at a time.

    A layer at a time bounds the projected dictionaries (heads x m x E floats) to one layer's heads.
    """
    by_layer: dict[int, list[str]] = {}
    for u in heads:
        by_layer.setdefault(parse_unit(u)[1], []).append(u)
    k = min(k, len(texts))
    for names in tqdm(by_layer.values(), desc="descriptions", disable=not progress):
        signals = signals_from_units(units, names, device=device)
        projected = project_dictionary(embeddings, signals)
        ts = textspan(signals, projected, k, device=device, progress=False)
        sm = somp(signals, projected, k, aggregate="l1", device=device, progress=False)
        for i, u in enumerate(names):
            directions = pca.components_[u]
            cards[u]["textspan"] = _texts(ts.atoms[i], ts.explained[i], texts, directions, projected[i])
            cards[u]["somp"] = _texts(sm.atoms[i], sm.explained[i], texts, directions, projected[i])
            n = len(cards[u]["pcs"])
            atoms, coefs = omp(directions[:n], projected[i], k, device=device)
            for pc, row, coef in zip(cards[u]["pcs"], atoms, coefs):
                pc["omp"] = [{"text": texts[j], "sign": 1 if c >= 0 else -1} for j, c in zip(row, coef)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def query_terms(query: str, vocabulary: Mapping[str, Sequence[str]]) -> tuple[list[str], str | None]:
    """The query's words, and the attribute it names (by name, synonym or one of its values; None if none)."""
    words = [SYNONYMS.get(w, w) for w in _words(query)]
    for w in words:
        if w in vocabulary:
            return words, w
    for w in words:
        for attribute, values in vocabulary.items():
            if any(_words(v) == [w] or " ".join(_words(v)) == " ".join(words) for v in values):
                return words, attribute
    return words, None


def stem(word: str) -> str:
    """A crude stem shared with the page: drop one of -ing, -ed, -s, then a final -e (striped, stripes -> strip)."""
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def uses(text: str, query: str, vocabulary: Mapping[str, Sequence[str]]) -> bool:
    """Whether a description uses the query: names one of the values of an attribute the query names, or one of its words."""
    words, attribute = query_terms(query, vocabulary)
    text_words = _words(text)
    joined = f" {' '.join(text_words)} "
    if attribute is not None and attribute in [w for w in words]:
        return any(f" {' '.join(_words(v))} " in joined for v in vocabulary[attribute])
    stems = {stem(t) for t in words}
    return any(stem(w) in stems for w in text_words)


def use_scores(doc: dict, query: str) -> pd.DataFrame:
    """Heads ranked by how strongly their descriptions use `query`, with the probe of the attribute it names.

    score = mean over TextSpan and SOMP of the share of the head's variance added by the picks that use the
    query (0: no pick uses it). Columns: unit, score, attribute, probe_accuracy, probe_skill (NaN without labels).
    Sorted by score, highest first, then unit order; only heads with score > 0.
    """
    vocabulary = doc.get("vocabulary") or {}
    _, attribute = query_terms(query, vocabulary)
    rows = []
    for card in doc["heads"]:
        methods = [m for m in ("textspan", "somp") if m in card]
        if not methods:
            continue
        score = 0.0
        for m in methods:  # summed in the page's order, so both rank near-ties alike
            for p in card[m]:
                if uses(p["text"], query, vocabulary):
                    score += p["gain"]
        score /= len(methods)
        probe = (card.get("probe") or {}).get(attribute or "", {})
        rows.append({"unit": card["unit"], "score": score, "attribute": attribute,
                     "probe_accuracy": probe.get("accuracy", np.nan), "probe_skill": probe.get("skill", np.nan)})
    table = pd.DataFrame(rows, columns=["unit", "score", "attribute", "probe_accuracy", "probe_skill"])
    table = table[table.score > 0]
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def top_overlap(doc: dict, attribute: str, top: int = 5) -> dict:
    """How many of the top heads by description (for `attribute`) are also top heads by probe skill.

    Returns {attribute, top (the number of heads compared), described (heads whose descriptions use it),
    overlap (of the top by description, how many are in the probe's top), top_description, top_probe}.
    """
    cards = [c for c in doc["heads"] if attribute in (c.get("probe") or {})]
    if not cards:
        valid = sorted({a for c in doc["heads"] for a in (c.get("probe") or {})})
        raise KeyError(f"no probe for attribute {attribute!r} in this atlas; valid: {', '.join(valid) or 'none'}")
    ranked = use_scores(doc, attribute)
    top = min(top, len(cards))
    by_probe = sorted(cards, key=lambda c: -c["probe"][attribute]["skill"])[:top]
    by_text = ranked.unit.tolist()[:top]
    probe_units = [c["unit"] for c in by_probe]
    return {"attribute": attribute, "top": top, "described": len(ranked), "top_description": by_text,
            "top_probe": probe_units, "overlap": len(set(by_text) & set(probe_units))}


TEMPLATE = Path(__file__).with_name("atlas_page.html")


def render_page(doc: dict) -> str:
    """The atlas document as one self-contained HTML page: its JSON inlined, hand-written JavaScript, no network."""
    data = json.dumps(doc, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")  # cannot close the script
    return (TEMPLATE.read_text(encoding="utf-8").replace("__TITLE__", html.escape(doc["model_display"]))
            .replace("__SYNONYMS__", json.dumps(SYNONYMS)).replace("__DATA__", data))


def write_page(doc: dict, folder: str | Path, embed_images: bool = True) -> Path:
    """Write `<folder>/<model>.html` (the page) and `<folder>/<model>.json` (the document); return the page's path.

    embed_images=False writes each thumbnail to `<folder>/<model>-thumbs/<i>.webp` instead of inlining it:
    a card then fetches only its own few dozen images, which keeps a paper model's page (thousands of
    thumbnails) quick to open; the folder must travel with the page.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / f"{doc['model']}.json", json.dumps(doc, separators=(",", ":"), allow_nan=False))
    if not embed_images:
        thumbs = folder / f"{doc['model']}-thumbs"
        with atomic_directory(thumbs) as tmp:
            for i, data in enumerate(doc["images"]):
                (tmp / f"{i}.webp").write_bytes(base64.b64decode(data))
        doc = dict(doc, images=len(doc["images"]), image_dir=thumbs.name)
    page = folder / f"{doc['model']}.html"
    write_text(page, render_page(doc))
    return page


def page_href(model: str, unit: str | None = None, page_dir: str = "_static/atlas", from_dir: str = "notebooks") -> str:
    """A link from a book page (in `from_dir` of the book) to a model's atlas, opened at `unit`'s card when given."""
    import posixpath

    href = posixpath.relpath(f"{page_dir}/{model}.html", from_dir)
    return href + (f"#unit={unit}" if unit else "")
