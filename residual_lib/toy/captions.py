"""Captions of toy-world images: a random subset of the attributes, in random order and phrasing.

Each caption also records which attribute values it states (`-1` where it is silent), so a training
batch knows which captions are true of which images: a caption that says only "a red object" is a
positive for every red image in the batch, not just the one it was drawn for.
"""

from __future__ import annotations

import numpy as np

from .world import ATTRIBUTES

# Phrasings of a whole caption; {np} is the object's noun phrase, {where}/{ground} optional clauses.
FRAMES = (
    "a photo of {np}{where}{ground}.",
    "{np}{where}{ground}.",
    "an image of {np}{where}{ground}.",
    "a picture of {np}{where}{ground}.",
    "there is {np}{where}{ground}.",
)
WHERE = (" in the {}", " at the {}", " in the {} of the image")
GROUND = (" on a {} background", " against a {} background")
NOUNS_WITHOUT_SHAPE = ("object", "shape", "thing")
# Adjective order follows English (size, pattern, colour, noun); the order of the clauses varies.
ADJECTIVES = ("size", "pattern", "colour")


def _determiner(phrase: str, definite: bool) -> str:
    if definite:
        return "the " + phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def describe(values: dict[str, str | None], rng: np.random.Generator) -> str:
    """One caption stating exactly the attribute values given (None: not mentioned)."""
    noun = values.get("shape") or NOUNS_WITHOUT_SHAPE[rng.integers(len(NOUNS_WITHOUT_SHAPE))]
    words = [values[a] for a in ADJECTIVES if values.get(a)]
    # "the" as often as "a/an" keeps prompts such as "the orange object" in the training distribution.
    noun_phrase = _determiner(" ".join(words + [noun]), definite=rng.random() < 0.3)
    where = WHERE[rng.integers(len(WHERE))].format(values["position"]) if values.get("position") else ""
    ground = GROUND[rng.integers(len(GROUND))].format(values["background"]) if values.get("background") else ""
    if where and ground and rng.random() < 0.5:
        where, ground = ground, where
    return FRAMES[rng.integers(len(FRAMES))].format(np=noun_phrase, where=where, ground=ground)


def captions(attributes: dict[str, np.ndarray], rng: np.random.Generator, keep: float = 0.5,
             n_stated: np.ndarray | None = None) -> tuple[list[str], dict[str, np.ndarray]]:
    """Captions for a batch ({name: int (N,)}) and the values each states ({name: int (N,)}, -1 = silent).

    Each attribute is stated with probability `keep`; at least one is always stated. With `n_stated`
    (probabilities of stating 1, 2, ... attributes), a caption instead states a uniformly chosen subset of
    that many attributes.
    """
    names = list(ATTRIBUTES)
    n = len(attributes[names[0]])
    if n_stated is None:
        stated = rng.random((n, len(names))) < keep
        empty = ~stated.any(axis=1)
        stated[empty, rng.integers(len(names), size=int(empty.sum()))] = True
    else:
        count = 1 + rng.choice(len(n_stated), size=n, p=np.asarray(n_stated) / np.sum(n_stated))
        # The `count` smallest of independent uniform keys form a uniformly drawn subset of that size.
        rank = rng.random((n, len(names))).argsort(axis=1).argsort(axis=1)
        stated = rank < count[:, None]
    mentioned = {a: np.where(stated[:, j], attributes[a], -1) for j, a in enumerate(names)}
    texts = [
        describe({a: ATTRIBUTES[a][mentioned[a][i]] if mentioned[a][i] >= 0 else None for a in names}, rng)
        for i in range(n)
    ]
    return texts, mentioned


def value_captions(rng: np.random.Generator, copies: int = 1) -> tuple[list[str], dict[str, np.ndarray]]:
    """`copies` captions per attribute value, each stating that value alone in a random phrasing, and what they state."""
    names = list(ATTRIBUTES)
    texts, mentioned = [], {a: [] for a in names}
    for a in names:
        for index, value in enumerate(ATTRIBUTES[a]):
            for _ in range(copies):
                texts.append(describe({a: value}, rng))
                for b in names:
                    mentioned[b].append(index if b == a else -1)
    return texts, {a: np.array(v, dtype=np.int64) for a, v in mentioned.items()}


def consistent(mentioned: dict[str, np.ndarray], attributes: dict[str, np.ndarray]) -> np.ndarray:
    """bool (N_images, N_captions): caption j states nothing false about image i."""
    names = list(mentioned)
    ok = np.ones((len(attributes[names[0]]), len(mentioned[names[0]])), dtype=bool)
    for a in names:
        said = mentioned[a][None, :]
        ok &= (said < 0) | (said == attributes[a][:, None])
    return ok
