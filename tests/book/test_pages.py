"""Each book page against its experiment: the parameters cell is `Params` (names and defaults), the page is thin,
and the runner refuses a bad value before any kernel starts."""

import ast
import re

import pytest

from residual_lib.book.layout import PROFILES
from residual_lib.book.runner import BookError, Layout, notebook_parameters
from residual_lib.experiments import PAGES, experiment
from residual_lib.paths import REPO_ROOT

LAYOUT = Layout(REPO_ROOT)
LOOP = re.compile(r"^\s*for .+ in .*(models|datasets|methods)\b", re.M)


def _cells(name: str) -> tuple[dict, list[str]]:
    """(parameters cell values, sources of the other code cells) of a page's Jupytext source."""
    import jupytext

    nb = jupytext.read(LAYOUT.source(name))
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    values = {t.id: ast.literal_eval(node.value) for node in ast.parse(params.source).body
              if isinstance(node, ast.Assign) for t in node.targets}
    return values, [c.source for c in code if c is not params]


@pytest.mark.parametrize("name", sorted(PAGES))
def test_parameters_cell_is_the_experiments_params(name):
    values, _ = _cells(name)
    assert values == experiment(name).Params().to_dict()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_code_is_short_and_loops_over_no_models_datasets_or_methods(name):
    _, sources = _cells(name)
    lines = [line for s in sources for line in s.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 20, f"{name}: {len(lines)} code lines outside the parameters cell"
    assert not any(LOOP.search(s) for s in sources), f"{name} loops over models, datasets or methods"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_a_figure_cell_shows_no_table(name):
    """myst-nb captions every output of a cell tagged as a figure: a table there is numbered as a second figure."""
    import jupytext

    cells = jupytext.read(LAYOUT.source(name)).cells
    captioned = [c.source for c in cells if c.cell_type == "code" and "figure" in c.metadata.get("mystnb", {})]
    assert not [s for s in captioned if re.search(r"\bshow\w*\(", s)], f"{name}: a figure cell also shows a table"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_profile_gives_valid_params(name, profile):
    notebook_parameters(LAYOUT, name, profile, {})


@pytest.mark.parametrize("override, message", [({"n": "abc"}, "n='abc' is not an integer"),
                                               ({"models": "toy-clip"}, "models='toy-clip' is not a list")])
def test_a_bad_override_is_refused_naming_parameter_and_value(override, message):
    with pytest.raises(BookError, match=message):
        notebook_parameters(LAYOUT, "fig02_intrinsic_dimension", "smoke", override)


def test_summary_pages_run_after_the_pages_they_read():
    from residual_lib.book.runner import execution_order, toc_notebooks

    order = execution_order(toc_notebooks(LAYOUT))
    assert order[-2:] in (["index", "reproduction_report"], ["reproduction_report", "index"])
    assert order.index("fig02_intrinsic_dimension") < order.index("index")
