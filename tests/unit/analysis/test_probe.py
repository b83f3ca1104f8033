"""Linear probes per unit: planted attributes are found, noise stays at chance, coordinates equal output space."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from residual_lib.analysis.probe import (best_units, cache_attributes, mentioned_attributes, probe_accuracy, skill,
                                text_vs_probe)
from residual_lib.units.unit_set import UnitSet


def _world(n=600, e=24, r=6, seed=0):
    """Three units: 'colour' carries label c linearly, 'shape' carries s, 'noise' neither."""
    rng = np.random.default_rng(seed)
    colour, shape = rng.integers(0, 4, n), rng.integers(0, 3, n)
    means_c, means_s = rng.normal(size=(4, r)) * 3, rng.normal(size=(3, r)) * 3
    coords = {"L0.H0": means_c[colour] + rng.normal(size=(n, r)),
              "L0.H1": means_s[shape] + rng.normal(size=(n, r)),
              "L0.H2": rng.normal(size=(n, r))}
    bases = {u: np.linalg.qr(rng.normal(size=(e, r)))[0].T for u in coords}
    offsets = {u: rng.normal(size=e) for u in coords}
    emb = sum(coords[u] @ bases[u] + offsets[u] for u in coords)
    return UnitSet(coords, bases, offsets, emb, colour), {"colour": colour, "shape": shape}


def test_planted_attributes_are_found_and_noise_is_at_chance():
    units, labels = _world()
    table = probe_accuracy(units, labels, progress=False).set_index(["unit", "attribute"])
    assert table.loc[("L0.H0", "colour"), "accuracy"] > 0.9
    assert table.loc[("L0.H1", "shape"), "accuracy"] > 0.9
    for unit, attribute in [("L0.H2", "colour"), ("L0.H2", "shape"), ("L0.H0", "shape")]:
        row = table.loc[(unit, attribute)]
        assert row.accuracy < row.chance + 0.12
    best = best_units(table.reset_index()).set_index("attribute").unit
    assert best.to_dict() == {"colour": "L0.H0", "shape": "L0.H1"}


def test_coordinates_give_the_output_space_probe():
    """Oracle: scikit-learn LogisticRegression on the (n, E) output-space vectors, same split, weak penalty."""
    units, labels = _world(n=400)
    ours = probe_accuracy(units, {"colour": labels["colour"]}, ["L0.H0"], C=1e4, progress=False).accuracy[0]
    train, test = train_test_split(np.arange(400), test_size=0.3, random_state=0, stratify=labels["colour"])
    x = units.output_space("L0.H0")
    ref = LogisticRegression(C=1e4, max_iter=5000).fit(x[train], labels["colour"][train])
    assert ours == pytest.approx(ref.score(x[test], labels["colour"][test]), abs=0.02)


def test_deterministic_under_seed():
    units, labels = _world(n=300)
    a = probe_accuracy(units, labels, seed=3, progress=False)
    b = probe_accuracy(units, labels, seed=3, progress=False)
    assert a.equals(b)


def test_bad_inputs_name_the_valid_values():
    units, labels = _world(n=100)
    with pytest.raises(ValueError, match="test_fraction=1.5"):
        probe_accuracy(units, labels, test_fraction=1.5)
    with pytest.raises(ValueError, match="single class"):
        probe_accuracy(units, {"x": np.zeros(100)})
    with pytest.raises(ValueError, match="has 50 entries"):
        probe_accuracy(units, {"x": np.arange(50) % 2}, progress=False)


def test_skill_is_zero_at_chance_and_one_when_perfect():
    table = pd.DataFrame({"unit": ["a", "a", "b", "b"], "attribute": ["x", "y", "x", "y"],
                          "accuracy": [1.0, 0.5, 0.25, 0.75], "chance": [0.25, 0.5, 0.25, 0.5]})
    s = skill(table)
    assert s.loc["a"].tolist() == [1.0, 0.0] and s.loc["b"].tolist() == [0.0, 0.5]


def test_text_vs_probe_names_the_described_attribute():
    vocabulary = {"colour": ["red", "blue"], "shape": ["circle", "square"], "position": ["top left"]}
    assert mentioned_attributes("A blue circle in the top left.", vocabulary) == ["colour", "shape", "position"]
    assert mentioned_attributes("a bluebird", vocabulary) == []
    skills = pd.DataFrame({"colour": [0.9, 0.1], "shape": [0.2, 0.8], "position": [0.0, 0.1]}, index=["u", "v"])
    texts = {"u": ["a red object", "a blue object", "a red square"], "v": ["a red object", "a circle", "a square"]}
    got = text_vs_probe(texts, skills, vocabulary).set_index("unit")
    assert got.loc["u", "text_attribute"] == "colour" and got.loc["u", "agree"]
    assert got.loc["v", "text_attribute"] == "shape" and got.loc["v", "agree"]
    assert got.loc["u", "text_share"] == pytest.approx(1.0) and got.loc["v", "text_share"] == pytest.approx(2 / 3)
    assert got.loc["u", "named_skill"] == pytest.approx(0.55) and got.loc["u", "unnamed_skill"] == pytest.approx(0.0)
    tie = text_vs_probe({"u": ["a red circle", "a blue square"]}, skills, vocabulary).iloc[0]
    assert tie.text_attribute == "colour, shape" and tie.agree and tie.text_attribute_skill == pytest.approx(0.9)


@pytest.mark.slow
def test_cache_attributes_line_up_with_the_cached_rows(tmp_path):
    """A real cache (random-init open_clip on toy-colour images): its labels are the colour attribute."""
    from unit_fixtures import tiny_model

    from residual_lib.store.cache import extract
    from residual_lib.data.datasets import dataset_spec

    pytest.importorskip("residual_lib.toy.data", reason="the toy world is not in this checkout")
    try:
        dataset_spec("toy-colour")
    except KeyError:
        pytest.skip("dataset toy-colour is not registered in this checkout")

    cache = extract(tiny_model(), "toy-colour", split="val", n=40, device="cpu", root=tmp_path)
    attributes = cache_attributes(cache)
    assert set(attributes) >= {"colour", "shape", "size"}
    np.testing.assert_array_equal(attributes["colour"], cache.labels)
    table = probe_accuracy(cache, {"shape": attributes["shape"]}, cache.heads[:2], progress=False)
    assert table.accuracy.between(0, 1).all()


@pytest.mark.slow
def test_a_caches_probe_table_is_stored_and_read_back(tmp_artifacts, tmp_path, monkeypatch):
    """The real-model page and the head atlas probe the same cache: the second call reads the first's table, keyed
    by the cache's content, the labels and the settings; an in-memory unit set is computed each time."""
    from unit_fixtures import tiny_model

    import residual_lib.analysis.probe as probe
    from residual_lib.store.cache import extract

    cache = extract(tiny_model(), "sklearn-digits", split="train", n=60, device="cpu", root=tmp_path)
    first = probe_accuracy(cache, {"class": cache.labels}, cache.heads[:3], progress=False)
    computed = probe._probe_table
    monkeypatch.setattr(probe, "_probe_table", lambda *a: pytest.fail("a stored probe table was computed again"))
    pd.testing.assert_frame_equal(probe_accuracy(cache, {"class": cache.labels}, cache.heads[:3], progress=False),
                                  first)
    calls = []
    monkeypatch.setattr(probe, "_probe_table", lambda *a: calls.append(a) or computed(*a))
    probe_accuracy(cache, {"class": cache.labels}, cache.heads[:3], seed=1, progress=False)  # other settings
    probe_accuracy(cache, {"class": cache.labels[::-1].copy()}, cache.heads[:3], progress=False)  # other labels
    x = np.random.default_rng(0).normal(size=(60, 4))
    units = UnitSet({"u": x}, {"u": np.eye(4)}, {"u": np.zeros(4)}, x, cache.labels)
    probe_accuracy(units, {"class": cache.labels}, progress=False)
    probe_accuracy(units, {"class": cache.labels}, progress=False)
    assert len(calls) == 4
