"""The prompt templates and class names the authors' code used, read at run time, never committed.

Two sources, both outside this repository:

- the ``clip-benchmark`` package (pinned), whose data files hold the per-dataset prompt sets of Radford et
  al. (2021) and several class-name lists (``clip_benchmark/datasets/en_zeroshot_classification_templates.json``
  and ``en_classnames.json``); where a set equals the authors', it is read from there;
- the authors' registry file (``src/residual/data/data_registry.py`` of Flegyas/ResiDual at the camera-ready
  commit), downloaded once and checked by sha256, for the sets no package ships (RESISC45's 18 templates,
  ImageNet-Sketch's 5, CIFAR-100's and SUN397's class names). It is Python source: the lists are read with
  `ast` (string literals and ``lambda c: f"...{c}..."`` templates), never executed.

`AUTHORS_PROMPTS` says, per paper dataset, where each comes from; ``"manifest"`` means our manifest's list,
already equal to the authors'. Templates use ``{}`` for the class name, as the manifests do.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .text_dictionary import RemoteText, fetch_remote_text

AUTHORS_REGISTRY = RemoteText(
    repo="Flegyas/ResiDual",
    commit="004b0aac16a74e73a5ac29a47b76c9f5b39531fc",
    path="src/residual/data/data_registry.py",
    sha256="6fbae7c132d3f3a3e09dfc78cecac8417c2efb1316c12185d211628e2cb98f0c",
    filename="residual_data_registry_004b0aa.py",
)


@dataclass(frozen=True)
class Source:
    """Where one list comes from: ("clip_benchmark", key), ("registry", variable name) or ("manifest",).

    strip: characters removed from every entry (GTSRB: the package quotes the class name, the authors do not).
    """

    kind: str
    key: str = ""
    strip: str = ""


CB, REG, MANIFEST = "clip_benchmark", "registry", "manifest"
# manifest name -> (templates, class names); verified against the authors' registry at the commit above
AUTHORS_PROMPTS: dict[str, tuple[Source, Source]] = {
    "cifar10": (Source(CB, "cifar10"), Source(MANIFEST)),
    "cifar100": (Source(CB, "cifar100"), Source(REG, "cifar100_classes")),
    "mnist": (Source(CB, "mnist"), Source(MANIFEST)),
    "svhn": (Source(CB, "mnist"), Source(MANIFEST)),            # the authors give SVHN the MNIST template
    "gtsrb": (Source(CB, "gtsrb", strip='"'), Source(CB, "gtsrb")),
    "dtd": (Source(CB, "dtd"), Source(MANIFEST)),
    "eurosat": (Source(CB, "eurosat"), Source(CB, "eurosat")),  # same names; in torchvision's label order
    "sun397": (Source(CB, "sun397"), Source(REG, "sun397_classes")),
    "cars": (Source(CB, "cars"), Source(MANIFEST)),
    "resisc45": (Source(REG, "OPENAI_RESISC45_TEMPLATES"), Source(MANIFEST)),
    "imagenet": (Source(CB, "imagenet1k"), Source(CB, "imagenet1k")),
    "imagenet-sketch": (Source(REG, "sketch_templates"), Source(CB, "imagenet1k")),
    "pacs": (Source(CB, "imagenet1k"), Source(MANIFEST)),       # the authors use the 80 ImageNet templates
}
PROMPT_CHOICES = ("manifest", "authors")


@cache
def _package_json(name: str) -> dict:
    return json.loads(resources.files("clip_benchmark.datasets").joinpath(name).read_text(encoding="utf-8"))


def registry_lists(source: str) -> dict[str, list[str]]:
    """Top-level list assignments of a Python source whose items are strings or ``lambda c: f"..."``.

    A lambda's f-string becomes a template with ``{}`` where it formats its argument; other lists are skipped.
    """
    out = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.List)):
            continue
        items = [_entry(e) for e in node.value.elts]
        if items and all(i is not None for i in items):
            out[node.targets[0].id] = items
    return out


def _entry(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Lambda) and isinstance(node.body, ast.JoinedStr) and len(node.args.args) == 1:
        arg, parts = node.args.args[0].arg, []
        for piece in node.body.values:
            if isinstance(piece, ast.Constant):
                parts.append(piece.value.replace("{", "{{").replace("}", "}}"))
            elif isinstance(piece, ast.FormattedValue) and isinstance(piece.value, ast.Name) and piece.value.id == arg:
                parts.append("{}")
            else:
                return None
        return "".join(parts)
    return None


@cache
def _registry() -> dict[str, list[str]]:
    return registry_lists(fetch_remote_text(AUTHORS_REGISTRY, "the authors' data registry").read_text(encoding="utf-8"))


def _resolve(source: Source, dataset: str, templates: bool) -> tuple[str, ...]:
    from .datasets import dataset_spec

    if source.kind == MANIFEST:
        spec = dataset_spec(dataset)
        return spec.templates if templates else spec.class_names
    if source.kind == CB:
        table = _package_json("en_zeroshot_classification_templates.json" if templates else "en_classnames.json")
        items = [t.replace("{c}", "{}") for t in table[source.key]] if templates else list(table[source.key])
    else:
        items = _registry()[source.key]
    return tuple(item.translate(str.maketrans("", "", source.strip)) for item in items)


def authors_templates(dataset: str) -> tuple[str, ...]:
    """The prompt templates the authors' code used for a paper dataset ({} for the class name)."""
    return _resolve(_sources(dataset)[0], dataset, templates=True)


def authors_class_names(dataset: str) -> tuple[str, ...]:
    """The class names the authors' code used for a paper dataset, in our loader's label order."""
    return _resolve(_sources(dataset)[1], dataset, templates=False)


def prompts(dataset: str, choice: str = "manifest") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(class names, templates) of a dataset: our manifest's ("manifest") or the authors' ("authors").

    A stand-in dataset (manifest field ``stands_in_for``) takes the authors' templates of the dataset it
    stands in for and keeps its own class names (it may hold only some of the classes).
    """
    from .datasets import dataset_spec

    if choice not in PROMPT_CHOICES:
        raise ValueError(f"unknown prompt choice {choice!r}; valid: {', '.join(PROMPT_CHOICES)}")
    spec = dataset_spec(dataset)
    if choice == "authors":
        original = spec.extra.get("stands_in_for")
        if dataset not in AUTHORS_PROMPTS and original is not None:
            return spec.class_names, authors_templates(original)
        return authors_class_names(dataset), authors_templates(dataset)
    return spec.class_names, spec.templates


def _sources(dataset: str) -> tuple[Source, Source]:
    if dataset not in AUTHORS_PROMPTS:
        raise KeyError(f"no authors' prompts for {dataset!r}; paper datasets: {', '.join(sorted(AUTHORS_PROMPTS))}")
    return AUTHORS_PROMPTS[dataset]
