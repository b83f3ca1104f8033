"""residual_lib: residual decomposition of vision transformers and the analyses of the ResiDual paper."""

from .version import __version__

# `decompose` comes last so the function shadows the submodule of the same name.
from .cache import UnitCache, extract  # noqa: E402
from .models import list_models, load_model  # noqa: E402
from .datasets import list_datasets, load_dataset  # noqa: E402
from .decompose import decompose  # noqa: E402
