"""residual_lib: residual decomposition of vision transformers and the analyses of the ResiDual paper."""

from .version import __version__

# The public surface; each subpackage's docstring says what it holds and which layers it may import.
from .store.cache import UnitCache, extract  # noqa: E402
from .models.registry import list_models, load_model, register_model  # noqa: E402
from .data.datasets import list_datasets, load_dataset  # noqa: E402
from .units.decompose import decompose, decomposition_error  # noqa: E402
