"""The toy world (`world`, `captions`, `data`) and the toy CLIP trained on it (`model`, `train`, `checkpoint`).

`ARCHS` lives here, not in `model`, so that asking which model names are toy models loads no model library.
"""

ARCHS = {"toy": "toy-clip", "smoke": "toy-clip-smoke"}  # toy profile -> its open_clip architecture
