"""The package's architecture as a test: subpackages in layers, imports running downward only, no cycles.

Each module belongs to the layer of the longest prefix below that names it. A module may import its own layer
(modules of one subpackage use each other) and any layer below; an import of a higher layer, or a cycle between
modules, fails with the modules named. Imports inside functions count: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "residual_lib"

# Lowest first. The base modules hold what every layer needs (files, paths, devices, the version).
LAYERS = [
    ["residual_lib.files", "residual_lib.paths", "residual_lib.device", "residual_lib.version"],
    ["residual_lib.units", "residual_lib.data", "residual_lib.paper"],
    ["residual_lib.models"],
    ["residual_lib.store"],
    ["residual_lib.analysis"],
    ["residual_lib.alignment"],
    ["residual_lib.report"],
    ["residual_lib.toy"],
    ["residual_lib.claims"],
    ["residual_lib.book.layout"],  # which pages exist and their parameters: the experiments list and read them
    ["residual_lib.experiments"],
    ["residual_lib.book", "residual_lib.reproduce"],
    ["residual_lib"],  # the package's own __init__: the public surface
]


def layer_of(module: str) -> int:
    best, found = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    if found is None:
        raise AssertionError(f"{module} is in no layer of LAYERS")
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The residual_lib modules `path` imports (a `from X import name` counts X.name when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("residual_lib")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("residual_lib"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    found.discard(name)
    return found


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_runs_upward():
    upward = sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
                    for a, targets in GRAPH.items() for b in targets
                    if layer_of(b) > layer_of(a) and not a.endswith("__main__"))
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    # A package's __init__ importing its own submodules is the package itself, not a cycle.
    graph = nx.DiGraph([(a, b) for a, targets in GRAPH.items() for b in targets if not b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "\n".join(" -> ".join(c + [c[0]]) for c in cycles)


@pytest.mark.parametrize("module", ["residual_lib.store.cache", "residual_lib.book.runner"])
def test_the_walk_sees_imports(module):
    # guards the test itself: a walker that found nothing would pass everything above
    assert GRAPH[module]
