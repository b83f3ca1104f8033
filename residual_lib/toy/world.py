"""The toy world: small RGB images of one object whose attributes are known, rendered in batches.

An image is drawn from six attributes, each an index into the tuples below (`ATTRIBUTES`): shape,
colour, pattern, position, size and background. Rendering is vectorised over the batch: shape masks
are computed at twice the resolution (numpy arrays (N, 2S, 2S)) and averaged into pixel coverage.
Variants give the out-of-distribution sets: `sketch` (dark outline on white, the ImageNet-Sketch
analogue), `textured` (the object on a random coloured texture), `noisy` (the usual image under
ten times the pixel noise), `noise` (the paper's "Random") and scikit-learn's bundled handwritten
digits rendered to the same size. A sketch's line width and a texture's opacity set how far a
rendering is shifted: bolder lines and fainter textures are partial shifts, between the plain images
and the full shift.
"""

from __future__ import annotations

import numpy as np

IMAGE_SIZE = 32
SUPERSAMPLE = 2

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "cyan", "pink")
PATTERNS = ("solid", "striped", "checkered")
POSITIONS = ("center", "top left", "top right", "bottom left", "bottom right")
SIZES = ("small", "medium", "large")
BACKGROUNDS = ("black", "gray", "white")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES, "colour": COLOURS, "pattern": PATTERNS,
    "position": POSITIONS, "size": SIZES, "background": BACKGROUNDS,
}

RGB = np.array([  # one row per entry of COLOURS
    (220, 30, 30), (30, 170, 50), (40, 70, 235), (240, 220, 30),
    (250, 135, 20), (135, 40, 200), (30, 215, 225), (250, 125, 195),
], dtype=np.float32)
BACKGROUND_RGB = np.array([(15, 15, 15), (128, 128, 128), (240, 240, 240)], dtype=np.float32)
# Object centres (x, y) in pixels, one per entry of POSITIONS: the centre and the four quadrant centres.
CENTRES = np.array([(16, 16), (9, 9), (23, 9), (9, 23), (23, 23)], dtype=np.float32)
RADII = np.array([3.6, 5.4, 7.4], dtype=np.float32)  # one per entry of SIZES
# The dark half of a striped or checkered pattern keeps the hue: the object's mean colour stays on its colour's ray.
SHADE = 0.45
PIXEL_NOISE = 6.0  # std of the Gaussian pixel noise, in 0..255 units
OUTLINE = 1.3  # the sketch variant's line width, in pixels
HEAVY_NOISE = 60.0  # the `noisy` variant's pixel noise: small shapes drown, colours survive on average
VARIANTS = ("plain", "sketch", "textured", "noisy")


def sample_attributes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Uniformly drawn attribute indices: {attribute: int64 (n,)}."""
    return {name: rng.integers(0, len(values), size=n) for name, values in ATTRIBUTES.items()}


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of the supersampled grid, in output pixels: x, y of shape (2S, 2S)."""
    side = IMAGE_SIZE * SUPERSAMPLE
    coords = (np.arange(side, dtype=np.float32) + 0.5) / SUPERSAMPLE
    return np.meshgrid(coords, coords, indexing="xy")


def _star_radius(theta: np.ndarray) -> np.ndarray:
    """Boundary radius of a five-pointed star (outer 1, inner 0.45) at angle theta, point up."""
    sector = np.mod(theta + np.pi / 2, 2 * np.pi / 5) / (2 * np.pi / 5)
    tri = np.abs(2 * sector - 1)  # 1 at the points, 0 between them
    return 0.45 + 0.55 * tri**1.5


def shape_masks(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-masks (N, H, W) for shape indices `shape` (N,) at normalised coordinates u, v (N, H, W)."""
    au, av = np.abs(u), np.abs(v)
    inside = np.zeros(u.shape, dtype=bool)
    masks = {
        "circle": lambda i: u[i] ** 2 + v[i] ** 2 <= 1.0,
        "square": lambda i: np.maximum(au[i], av[i]) <= 0.82,
        "triangle": lambda i: (v[i] <= 0.8) & (au[i] <= (v[i] + 1.0) * 0.55),
        "diamond": lambda i: au[i] + av[i] <= 1.05,
        "cross": lambda i: ((au[i] <= 0.32) & (av[i] <= 1.0)) | ((av[i] <= 0.32) & (au[i] <= 1.0)),
        "star": lambda i: np.hypot(u[i], v[i]) <= _star_radius(np.arctan2(v[i], u[i])),
    }
    for index, name in enumerate(SHAPES):
        rows = shape == index
        if rows.any():
            inside[rows] = masks[name](rows)
    return inside


def _pattern_on(pattern: np.ndarray) -> np.ndarray:
    """Where the pattern shows the full colour, bool (N, S, S); elsewhere the darker shade shows."""
    row, col = np.indices((IMAGE_SIZE, IMAGE_SIZE))
    on = np.ones((len(pattern), IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    on[pattern == PATTERNS.index("striped")] = row // 2 % 2 == 0
    on[pattern == PATTERNS.index("checkered")] = (row // 2 + col // 2) % 2 == 0
    return on


def _textures(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random coloured textures float32 (n, 3, S, S) in 0..255: smooth blotches plus fine grain."""
    coarse = rng.uniform(0, 255, size=(n, 3, 4, 4)).astype(np.float32)
    blotches = np.repeat(np.repeat(coarse, IMAGE_SIZE // 4, axis=2), IMAGE_SIZE // 4, axis=3)
    grain = rng.normal(0, 25, size=(n, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    return np.clip(blotches + grain, 0, 255)


def _coverage(inside: np.ndarray) -> np.ndarray:
    """Fraction of each output pixel covered, float32 (N, S, S), from supersampled masks (N, 2S, 2S)."""
    n, h, w = inside.shape
    k = SUPERSAMPLE
    return inside.reshape(n, h // k, k, w // k, k).sum(axis=(2, 4), dtype=np.float32) / (k * k)


def render(attributes: dict[str, np.ndarray], rng: np.random.Generator, variant: str = "plain", *,
           outline: float = OUTLINE, texture: float = 1.0) -> np.ndarray:
    """Images uint8 (N, 3, S, S) of the objects described by `attributes` ({name: int (N,)}).

    The strength of a shift: `outline` is the sketch's line width in pixels, `texture` the opacity of the textured
    variant's texture over the image's own background (below 1: a partial shift toward the plain images).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    shape = np.asarray(attributes["shape"])
    n = len(shape)
    x, y = _grid()
    # Small jitter of centre and radius so that no two renderings of the same attributes coincide.
    centre = CENTRES[attributes["position"]] + rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)
    radius = RADII[attributes["size"]] * rng.uniform(0.93, 1.07, size=n).astype(np.float32)
    u = (x[None] - centre[:, 0, None, None]) / radius[:, None, None]
    v = (y[None] - centre[:, 1, None, None]) / radius[:, None, None]
    inside = shape_masks(shape, u, v)

    if variant == "sketch":
        # Outline: inside the shape but not inside the same shape shrunk by `outline` pixels.
        shrink = (radius / np.maximum(radius - outline, 0.5))[:, None, None]
        inside &= ~shape_masks(shape, u * shrink, v * shrink)
        background = np.full((n, 3, 1, 1), 245.0, dtype=np.float32)
        paint = np.full((n, 3, 1, 1), 25.0, dtype=np.float32)
    else:
        if variant == "textured":
            background = _textures(n, rng)
            if texture < 1:
                plain = BACKGROUND_RGB[attributes["background"]][:, :, None, None]
                background = texture * background + (1 - texture) * plain
        else:
            background = BACKGROUND_RGB[attributes["background"]][:, :, None, None]
        colour = RGB[attributes["colour"]][:, :, None, None]
        paint = np.where(_pattern_on(np.asarray(attributes["pattern"]))[:, None], colour, SHADE * colour)
    cover = _coverage(inside)[:, None]
    image = background + cover * (paint - background)
    noise = HEAVY_NOISE if variant == "noisy" else PIXEL_NOISE
    image = image + rng.normal(0, noise, size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def noise_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform pixel noise uint8 (n, 3, S, S): the paper's "Random" dataset."""
    return rng.integers(0, 256, size=(n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 bundled 8x8 digits as white-on-black uint8 (N, 3, S, S), and their labels (N,)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    large = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    gray = large.clamp(0, 255).round().to(torch.uint8).numpy()
    return np.repeat(gray, 3, axis=1), digits.target.astype(np.int64)
