"""residual_lib: residual decomposition of vision transformers and the analyses of the ResiDual paper."""

__version__ = "0.1.0"

# Import order matters: cache reads __version__, and `decompose` must come last so the function
# shadows the submodule of the same name.
from .cache import UnitCache, extract  # noqa: E402
from .models import list_models, load_model  # noqa: E402
from .datasets import list_datasets, load_dataset  # noqa: E402
from .decompose import decompose  # noqa: E402
