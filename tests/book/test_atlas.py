"""The head atlas: search rule and overlap on hand-made documents, the smoke model's atlas, its page in Chromium."""

import base64
import io
import json
import re

import numpy as np
import pytest

from residual_lib.book.layout import PROFILES
from residual_lib.report import atlas

VOCABULARY = {"colour": ["red", "blue"], "pattern": ["solid", "striped"], "position": ["center", "top left"]}


def pick(text, gain, pc=1, sign=1):
    return {"text": text, "gain": gain, "pc": pc, "sign": sign}


def card(unit, textspan, somp, colour_skill):
    return {"unit": unit, "textspan": textspan, "somp": somp,
            "probe": {"colour": {"accuracy": 0.5 + colour_skill / 2, "chance": 0.5, "skill": colour_skill}}}


DOC = {"vocabulary": VOCABULARY, "heads": [
    card("L0.H0", [pick("a red object", 0.4), pick("a striped object", 0.1)], [pick("a dog", 0.3)], 0.9),
    card("L0.H1", [pick("a blue striped object", 0.2)], [pick("a red object", 0.2), pick("a blue object", 0.1)], 0.1),
    card("L1.H0", [pick("an object in the top left", 0.5)], [pick("a solid object", 0.5)], 0.5),
]}


@pytest.mark.parametrize("text, query, expected", [
    ("a red object", "colour", True), ("a red object", "color", True), ("a red object", "Colours", True),
    ("a photo of a dog", "colour", False), ("a striped object", "stripes", True), ("a striped object", "pattern", True),
    ("a red object", "red", True), ("a blue object", "red", False), ("a reddish dog", "red", False),
    ("an object in the top left", "position", True), ("an object on top", "position", False),
    ("a photo of a dog", "dogs", True), ("two circles", "circle", True), ("a checkered square", "checkers", True),
    ("a large object", "larger", False)])
def test_a_description_uses_an_attribute_by_its_values_and_a_word_by_its_stem(text, query, expected):
    assert atlas.uses(text, query, VOCABULARY) is expected


def test_query_names_the_attribute_of_a_value_word():
    assert atlas.query_terms("red", VOCABULARY)[1] == "colour"
    assert atlas.query_terms("top left", VOCABULARY)[1] == "position"
    assert atlas.query_terms("dog", VOCABULARY)[1] is None


def test_use_scores_rank_heads_by_the_variance_their_matching_descriptions_explain():
    table = atlas.use_scores(DOC, "colour")
    # L0.H0: (0.4 + 0) / 2; L0.H1: (0.2 + 0.2 + 0.1) / 2; L1.H0 uses no colour and is left out
    assert table.unit.tolist() == ["L0.H1", "L0.H0"]
    assert table.score.tolist() == pytest.approx([0.25, 0.2])
    assert table.probe_accuracy.tolist() == pytest.approx([0.55, 0.95])
    assert (table.attribute == "colour").all()
    assert atlas.use_scores(DOC, "giraffe").empty


def test_top_overlap_counts_heads_on_both_lists():
    o = atlas.top_overlap(DOC, "colour", top=2)
    assert o["top_description"] == ["L0.H1", "L0.H0"] and o["top_probe"] == ["L0.H0", "L1.H0"]
    assert o["overlap"] == 1 and o["described"] == 2 and o["top"] == 2
    assert atlas.top_overlap(DOC, "colour", top=1)["overlap"] == 0
    with pytest.raises(KeyError, match="valid: colour"):
        atlas.top_overlap(DOC, "shape")


def test_thumbnails_decode_to_the_image_they_encode():
    from PIL import Image

    rng = np.random.default_rng(0)
    image = np.zeros((3, 32, 32), np.uint8)
    image[0, 8:24, 8:24] = 220  # a red square on black, as the toy world draws
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(atlas.thumbnail(image, 32)))).convert("RGB"))
    assert decoded.shape == (32, 32, 3)
    assert np.abs(decoded.astype(float) - image.transpose(1, 2, 0)).mean() < 8
    big = Image.new("RGB", (224, 160), (10, 200, 30))
    small = Image.open(io.BytesIO(base64.b64decode(atlas.thumbnail(big, 48))))
    assert small.size == (48, 34)


def test_the_page_inlines_the_document_even_when_a_text_could_close_its_script(tmp_path):
    doc = {"model": "m", "model_display": "M <b>", "heads": [{"unit": "L0.H0", "textspan": [pick("</script><b>x", 1)]}]}
    page = atlas.write_page(doc, tmp_path)
    html = page.read_text()
    data = re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', html, re.S).group(1)
    assert json.loads(data) == doc
    assert "<title>Head atlas: M &lt;b&gt;</title>" in html
    assert json.loads((tmp_path / "m.json").read_text()) == doc
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from the network


# --- the smoke model, end to end ---------------------------------------------------------------

SMOKE = dict(models=["toy-clip-smoke"], reference_dataset="toy-mixed", datasets=["toy-colour", "toy-noise"],
             n_reference=120, n=100, k=3, n_pcs=2, n_thumbs=3, device="cpu",
             # a real network's atlas: the random stand-in DINO (no download) on labelled bundled digits
             network_models=["standin-dino"], network_reference_dataset="sklearn-digits", network_datasets=["random"],
             network_n=40, network_n_reference=120)


@pytest.fixture(scope="module")
def smoke(smoke_book, smoke_model_artifacts, tmp_path_factory):
    """The atlas experiment on the session's smoke model and artifacts folder, its page in a throwaway folder; after
    the smoke book, which trains the model and extracts the caches this reads."""
    from residual_lib.experiments import atlas as experiment

    pages = tmp_path_factory.mktemp("atlas") / "pages"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESIDUAL_ARTIFACTS", str(smoke_model_artifacts))
        result = experiment.run(experiment.Params(**SMOKE, page_dir=str(pages)))
        yield result, smoke_model_artifacts


@pytest.mark.slow
def test_smoke_atlas_has_a_full_card_for_every_head(smoke):
    from residual_lib.data.text_dictionary import text_dictionary
    from residual_lib.toy.world import ATTRIBUTES

    result, _ = smoke
    doc = result.artifacts["docs"]["toy-clip-smoke"]
    assert [c["unit"] for c in doc["heads"]] == ["L0.H0", "L0.H1", "L1.H0", "L1.H1"]
    texts = set(text_dictionary("toy"))
    for c in doc["heads"]:
        assert sum(c["spectrum"]) == pytest.approx(1, abs=1e-3) and c["evr1"] == c["spectrum"][0]
        cum = np.cumsum(c["spectrum"])  # the JSON keeps 4 decimals: the 0.99 crossing within rounding
        assert cum[c["linear_id"] - 1] > 0.99 - 1e-3 and (c["linear_id"] == 1 or cum[c["linear_id"] - 2] <= 0.99 + 1e-3)
        assert len(c["pcs"]) == 2 and all(len(pc["plus"]) == len(pc["minus"]) == 3 for pc in c["pcs"])
        assert all(len(pc["omp"]) == 3 and {o["text"] for o in pc["omp"]} <= texts for pc in c["pcs"])
        for method in ("textspan", "somp"):
            assert len(c[method]) == 3 and {p["text"] for p in c[method]} <= texts
            assert all(p["gain"] >= -1e-9 and 1 <= p["pc"] <= len(c["spectrum"]) for p in c[method])
        assert set(c["similarity"]) == {"toy-colour", "toy-noise"}
        assert all(0 <= s <= 1 + 1e-9 for s in c["similarity"].values())
        assert set(c["probe"]) == set(ATTRIBUTES) and all(0 <= p["accuracy"] <= 1 for p in c["probe"].values())
    used = {i for c in doc["heads"] for pc in c["pcs"] for i in pc["plus"] + pc["minus"]}
    assert used == set(range(len(doc["images"])))  # every thumbnail is used, none is missing
    assert set(result.tables["description_vs_probe"].attribute) == set(ATTRIBUTES)


@pytest.mark.slow
def test_a_real_network_gets_its_own_atlas_page_with_class_probes_on_the_real_model_pages_caches(smoke):
    from residual_lib.experiments import atlas as experiment, real_model

    result, _ = smoke
    assert list(result.artifacts["pages"]) == ["toy-clip-smoke", "standin-dino"]
    assert all(page.is_file() for page in result.artifacts["pages"].values())
    doc = result.artifacts["docs"]["standin-dino"]
    assert len(doc["heads"]) == 36 and not doc["has_text"] and doc["dataset"] == "sklearn-digits"
    assert doc["vocabulary"]["class"][:3] == ["0", "1", "2"] and doc["images"]
    for c in doc["heads"]:
        assert set(c["probe"]) == {"class"} and 0 <= c["probe"]["class"]["accuracy"] <= 1
        assert set(c["similarity"]) == {"Random"}  # named as the real-model page names it
        assert "textspan" not in c
    params = experiment.Params(**SMOKE)
    assert experiment.caches(params)[-2:] == real_model.caches(params.real())
    assert (result.tables["heads"]["model"] == doc["model_display"]).sum() == 36


def test_the_real_networks_settings_are_checked_as_the_real_model_page_checks_them():
    from residual_lib.experiments import ParamsError, atlas as experiment

    with pytest.raises(ParamsError, match="atlas: network_.*real_model: parameter n_reference=\\[1, 2, 3\\] has 3 counts"):
        experiment.Params(**{**SMOKE, "network_n_reference": [1, 2, 3]})


@pytest.mark.slow
def test_smoke_atlas_thumbnails_are_the_extreme_images_of_each_component(smoke):
    """Oracle: scikit-learn's PCA of the head's coordinates; its extreme samples' images are the card's (either sign)."""
    from PIL import Image
    from sklearn.decomposition import PCA

    from residual_lib.store.cache import CacheKey, UnitCache

    result, artifacts = smoke
    doc = result.artifacts["docs"]["toy-clip-smoke"]
    key = CacheKey("toy-clip-smoke", "toy-mixed", "train", 120)
    units = UnitCache(key.folders(artifacts / "cache")[0])
    images = atlas.CacheImages(units)

    def decoded(i):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(doc["images"][i]))).convert("RGB"), float)

    for c in doc["heads"]:
        scores = PCA(2).fit_transform(units.coords(c["unit"]).astype(np.float64))
        for j, pc in enumerate(c["pcs"]):
            ends = {int(scores[:, j].argmax()), int(scores[:, j].argmin())}
            for shown in (pc["plus"][0], pc["minus"][0]):
                distance = {e: np.abs(decoded(shown) - np.asarray(images[e]).transpose(1, 2, 0)).mean() for e in ends}
                assert min(distance.values()) < 8, (c["unit"], j)


@pytest.mark.slow
def test_smoke_page_in_chromium_clicks_a_head_and_searches_colour(smoke, tmp_path):
    from browser import Browser, chromium

    if chromium() is None:
        pytest.skip("headless browser missing: install Debian's 'chromium' package (apt-get install chromium)")
    result, _ = smoke
    doc = result.artifacts["docs"]["toy-clip-smoke"]
    page = result.artifacts["pages"]["toy-clip-smoke"]
    with Browser(tmp_path / "profile") as b:
        b.open(page.as_uri())
        assert b.eval("document.querySelectorAll('#grid button').length") == 4
        b.click('#grid button[data-unit="L1.H1"]')
        assert b.eval("document.getElementById('card-title').textContent").startswith("L1.H1")
        card = doc["heads"][3]
        shown = b.eval("[...document.querySelectorAll('#card table.t')].slice(0, 2).map(t => "
                       "[...t.querySelectorAll('tr')].slice(1).map(r => r.cells[1].textContent))")
        assert shown == [[p["text"] for p in card["textspan"]], [p["text"] for p in card["somp"]]]
        omp = b.eval("[...document.querySelectorAll('#card .pc[data-pc=\"1\"] li')].map(l => l.textContent)")
        assert {o["text"] + " OMP" for o in card["pcs"][0]["omp"]} <= set(omp)
        # thumbnails: 2 components x 2 ends x 3 images, each decoded by the browser at 32 px
        assert b.eval("[...document.querySelectorAll('#card .pc img')].map(i => i.complete && i.naturalWidth)") == [32] * 12
        b.type("#q", "colour")
        ranked = b.eval("[...document.querySelectorAll('#ranked li')].map(l => [l.dataset.unit, l.textContent])")
        expected = atlas.use_scores(doc, "colour")
        assert [u for u, _ in ranked] == expected.unit.tolist() and len(ranked) > 0
        for (_, text), acc in zip(ranked, expected.probe_accuracy):
            assert f"probe colour {100 * acc:.1f}%" in text
        overlap = atlas.top_overlap(doc, "colour")
        assert f"Of the top {min(overlap['top'], overlap['described'])} by description, {overlap['overlap']} " in \
            b.eval("document.getElementById('agreement').textContent")
        assert b.eval("document.getElementById('by').value") == "search:"
        b.eval("document.getElementById('by').value = 'probe:colour'; document.getElementById('by').dispatchEvent(new Event('change'))")
        cells = b.eval("[...document.querySelectorAll('#grid button')].map(x => x.textContent)")
        assert cells == [f"{c['probe']['colour']['accuracy']:.2f}" for c in doc["heads"]]
        b.open("about:blank")  # a new hash alone would not reload the page
        b.open(page.as_uri() + "#unit=L0.H1&q=striped")
        assert b.eval("document.getElementById('card-title').textContent").startswith("L0.H1")
        assert b.eval("document.getElementById('q').value") == "striped"
        assert b.errors == []


def test_thumbnails_can_live_beside_the_page(tmp_path):
    image = atlas.thumbnail(np.full((3, 32, 32), 200, np.uint8), 32)
    doc = {"model": "m", "model_display": "M", "images": [image, image], "heads": []}
    html = atlas.write_page(doc, tmp_path, embed_images=False).read_text()
    assert (tmp_path / "m-thumbs" / "1.webp").read_bytes() == base64.b64decode(image)
    data = json.loads(re.search(r'id="atlas-data">(.*?)</script>', html, re.S).group(1))
    assert data["images"] == 2 and data["image_dir"] == "m-thumbs" and image not in html
    assert json.loads((tmp_path / "m.json").read_text())["images"] == [image, image]  # the document keeps them


def test_page_href_from_a_book_page():
    assert atlas.page_href("toy-clip", "L3.H1") == "../_static/atlas/toy-clip.html#unit=L3.H1"
    assert atlas.page_href("toy-clip") == "../_static/atlas/toy-clip.html"


@pytest.mark.parametrize("profile", PROFILES)
def test_the_notebook_declares_the_experiment_parameters_and_each_profile_validates(profile):
    from residual_lib.book import layout as book_layout, runner as book
    from residual_lib.experiments import atlas as experiment
    from residual_lib.experiments import page_params

    layout = book_layout.Layout()
    _, declared = book_layout.load_notebook(layout, "atlas")
    assert declared == experiment.Params.names()
    defaults, own = book_layout.parameter_files(layout.params_dir, profile, "atlas")
    params = page_params("atlas", book_layout.merge_parameters("atlas", declared, defaults, own, {}))
    assert params.models and params.page_dir == "book/_static/atlas"
    assert "notebooks/atlas" in book_layout.toc_files(layout.toc)


def test_a_planted_head_is_top_by_description_and_by_probe():
    """Synthetic units where only L1.H2 carries the class: its descriptions name classes most and its probe wins."""
    from unitset_factory import class_embeddings, random_unitset

    units, _ = random_unitset(n=240, signal_heads=("L1.H2",))
    names = ["alpha", "beta", "gamma", "delta"]
    distractors = np.random.default_rng(5).normal(size=(8, 16))
    embeddings = np.concatenate([class_embeddings(4, 16), distractors / np.linalg.norm(distractors, axis=1, keepdims=True)])
    texts = [f"a {c} thing" for c in names] + [f"a photo of a {w}" for w in
                                                ("dog", "car", "tree", "house", "boat", "cup", "book", "bird")]
    doc = atlas.head_atlas(units, model="synthetic", texts=texts, text_embeddings=embeddings,
                           labels={"class": units.labels}, vocabulary={"class": names}, k=3, n_pcs=2,
                           device="cpu", progress=False)
    assert doc["images"] == [] and "plus" not in doc["heads"][0]["pcs"][0] and len(doc["heads"]) == 8
    ranked = atlas.use_scores(doc, "class")
    assert ranked.unit.iloc[0] == "L1.H2"
    assert max(doc["heads"], key=lambda c: c["probe"]["class"]["skill"])["unit"] == "L1.H2"
    assert atlas.top_overlap(doc, "class", top=1)["overlap"] == 1
    signal = next(c for c in doc["heads"] if c["unit"] == "L1.H2")
    assert signal["textspan"][0]["text"] in texts[:4] and signal["textspan"][0]["pc"] <= 3


@pytest.mark.parametrize("profile", PROFILES)
def test_the_atlas_reads_only_caches_the_reproduce_plan_already_extracts(profile):
    from residual_lib.book import layout as book_layout, runner as book
    from residual_lib.reproduce import plan as reproduce
    from residual_lib.experiments import atlas as experiment
    from residual_lib.experiments import page_params

    layout = book_layout.Layout()
    _, declared = book_layout.load_notebook(layout, "atlas")
    params = page_params("atlas", book_layout.merge_parameters("atlas", declared, *book_layout.parameter_files(
        layout.params_dir, profile, "atlas"), {}))
    planned = {(j.model, j.dataset, j.split, j.n, j.seed, j.dtype) for j in reproduce.plan(profile)}
    needed = {(k.model, k.dataset, k.split, k.n, k.seed, k.dtype) for k in experiment.caches(params)}
    assert needed and needed <= planned, sorted(needed - planned)
