"""Images as the models take them: 8-bit RGB, converted where the conversion is well defined, refused otherwise.

Pillow's own `convert("RGB")` clips 16-bit grey values to 255 (a bright photograph turns white) and drops an alpha
channel, keeping whatever colour the transparent pixels happen to hold. Here 16-bit values are scaled to 8 bits
(v / 257, so 65535 -> 255), transparent images are composited onto white (as a page shows them), and modes without
a fixed range (32-bit integers, floats) are an error naming the dataset and row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

# Modes Pillow converts to RGB exactly (colour spaces, grey, palettes without transparency).
CONVERTIBLE = ("L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV")
TRANSPARENT = ("RGBA", "RGBa", "LA", "La", "PA")
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(image: Any, where: str) -> Any:
    """A PIL image as 8-bit RGB (other objects, such as tensors, pass unchanged); `where` names the image in errors
    ("dataset 'x' row 7")."""
    if not isinstance(image, Image.Image) or image.mode == "RGB":
        return image
    mode = image.mode
    if mode in SIXTEEN_BIT:
        grey = np.round(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in TRANSPARENT or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in CONVERTIBLE:
        return image.convert("RGB")
    raise ValueError(f"{where}: image mode {mode!r} has no fixed range to map to 8-bit RGB; convert the dataset's "
                     f"images to one of RGB, {', '.join(CONVERTIBLE + TRANSPARENT + SIXTEEN_BIT)}")
