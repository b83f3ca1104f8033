"""residual_lib: residual decomposition of vision transformers and the analyses of the ResiDual paper."""

__version__ = "0.1.0"
