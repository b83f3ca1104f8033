"""The text dictionary of the toy world: the candidate descriptions that TextSpan and SOMP choose from.

It states every attribute value alone and in pairs, and adds distractors that match nothing in
the world (animals, scenes, materials), so that a method that picks a distractor for a unit is
visibly wrong.
"""

from __future__ import annotations

from itertools import combinations, product

from .world import ATTRIBUTES

# One phrase per attribute value, in the caption generator's wording.
_PHRASES = {
    "shape": "a {}",
    "colour": "a {} object",
    "pattern": "a {} object",
    "position": "an object in the {}",
    "size": "a {} object",
    "background": "an object on a {} background",
}
_DISTRACTOR_THINGS = ("dog", "cat", "horse", "bird", "car", "bicycle", "tree", "house", "boat", "airplane",
                      "flower", "person", "mountain", "river", "city street", "forest", "beach", "guitar",
                      "cup of coffee", "book")
_DISTRACTOR_FRAMES = ("a photo of a {}", "a blurry photo of a {}", "a painting of a {}")
_DISTRACTOR_SCENES = ("a sunset over the sea", "snow on a mountain", "a crowded market", "a bowl of fruit",
                      "an old wooden door", "a rusty metal surface", "handwritten text on paper",
                      "a smiling face", "clouds in the sky", "grass in a field")


def _pair(a: str, va: str, b: str, vb: str) -> str:
    """A description stating two attribute values in the caption generator's word order."""
    values = {a: va, b: vb}
    adjectives = [values[name] for name in ("size", "pattern", "colour") if name in values]
    noun = values.get("shape", "object")
    text = ("an " if (adjectives or [noun])[0][0] in "aeiou" else "a ") + " ".join(adjectives + [noun])
    if "position" in values:
        text += f" in the {values['position']}"
    if "background" in values:
        text += f" on a {values['background']} background"
    return text


def text_dictionary() -> list[str]:
    """Unique descriptions (>= 300): every attribute value, every pair of values, then distractors."""
    entries = [_PHRASES[a].format(v) for a, values in ATTRIBUTES.items() for v in values]
    for a, b in combinations(ATTRIBUTES, 2):
        entries += [_pair(a, va, b, vb) for va, vb in product(ATTRIBUTES[a], ATTRIBUTES[b])]
    entries += [frame.format(thing) for frame, thing in product(_DISTRACTOR_FRAMES, _DISTRACTOR_THINGS)]
    entries += list(_DISTRACTOR_SCENES)
    return list(dict.fromkeys(entries))
