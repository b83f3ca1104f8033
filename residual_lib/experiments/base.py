"""What every experiment shares: validated `Params`, and the `Result` that `run` returns.

An experiment is a module per paper figure or table (`residual_lib.experiments.fig02`, ...) with

- `Params`, a frozen dataclass deriving from `base.Params`: the single source of its parameter names,
  types, defaults (the toy profile's values) and validation;
- `caches(params) -> list[CacheKey]`: the unit caches `run` reads, for the planner;
- `run(params) -> Result`: tidy tables and the named numbers the page quotes (an experiment that computes
  derives its `Params` from `ComputeParams` and decorates `run` with `computes`, which applies `threads`);
- plot functions over a `Result`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import pandas as pd

from ..data.text_dictionary import DICTIONARIES
from ..device import VALID_DEVICES, cpu_threads
from ..store.cache import STORAGE_DTYPES

# Choices declared where the code that uses them lives, so a page's parameter is refused on creation, not in `run`.
CacheDtype = Literal[STORAGE_DTYPES]
Dictionary = Literal[DICTIONARIES]


class ParamsError(ValueError):
    """A parameter is unknown or has a value its experiment cannot use."""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        inner = typing.get_args(tp)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(inner, _type_name(inner))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _conforms(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in typing.get_args(tp))
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, typing.get_args(tp)[0]) for v in value)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is Any:
        return True
    return isinstance(value, tp)


@dataclass(frozen=True)
class Params:
    """Base of every experiment's parameters: each field is checked against its annotation on creation.

    Subclasses add `check(self)` for rules between fields (raise `ParamsError`).
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):  # lists arrive as tuples from code that builds Params itself
                object.__setattr__(self, f.name, list(value))
                value = list(value)
            if not _conforms(value, hints[f.name]):
                raise ParamsError(f"{self._experiment()}: parameter {f.name}={value!r} "
                                  f"is not {_type_name(hints[f.name])}")
        try:
            self._inherited_check()
            self.check()
        except ParamsError as err:
            raise ParamsError(f"{self._experiment()}: {err}") from None

    @classmethod
    def _experiment(cls) -> str:
        return cls.__module__.rsplit(".", 1)[-1]

    def check(self) -> None:
        """Rules that involve several fields; none by default."""

    def _inherited_check(self) -> None:
        """Rules on the fields an intermediate base class adds, so a subclass's `check` need not call them."""

    @classmethod
    def names(cls) -> list[str]:
        """The parameter names: the experiment's own in declaration order, then those it inherits (`threads`)."""
        inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                     for f in dataclasses.fields(base)}
        names = [f.name for f in dataclasses.fields(cls)]
        return [n for n in names if n not in inherited] + [n for n in names if n in inherited]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """Params from a mapping (a notebook's merged parameters); an unknown key is an error."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ParamsError(f"{cls._experiment()}: unknown parameter(s) {', '.join(unknown)}; "
                              f"valid: {', '.join(cls.names())}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain mapping."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ComputeParams(Params):
    """Params of an experiment whose `run` computes: it runs under `device.cpu_threads(threads)`."""

    threads: int | None = None  # CPU threads of torch, BLAS and OpenMP in `run` (None: the libraries' own)

    def _inherited_check(self) -> None:
        positive(self, "threads")
        if getattr(self, "seed", 0) < 0:  # numpy's generators take no negative seed
            raise ParamsError(f"parameter seed={self.seed!r} must be >= 0")
        device = getattr(self, "device", "auto")
        if device.split(":")[0] not in VALID_DEVICES:
            raise ParamsError(f"parameter device={device!r} must be one of {', '.join(VALID_DEVICES)} "
                              "(optionally 'cuda:N')")


def computes(run: Callable[[ComputeParams], "Result"]) -> Callable[[ComputeParams], "Result"]:
    """Decorate an experiment's `run(p)` to execute under `cpu_threads(p.threads)`."""

    @functools.wraps(run)
    def threaded(p: ComputeParams) -> "Result":
        with cpu_threads(p.threads):
            return run(p)

    return threaded


def positive(params: Params, *names: str) -> None:
    """Raise `ParamsError` unless each named parameter is None or > 0."""
    for name in names:
        value = getattr(params, name)
        if value is not None and value <= 0:
            raise ParamsError(f"parameter {name}={value!r} must be positive")


def in_range(params: Params, interval: str, *names: str) -> None:
    """Raise `ParamsError` unless each named parameter lies in `interval`, written as "(0, 1]" (open or closed ends)."""
    low, high = (float(end) for end in interval[1:-1].split(","))
    for name in names:
        value = getattr(params, name)
        above = low < value if interval[0] == "(" else low <= value
        below = value < high if interval[-1] == ")" else value <= high
        if not (above and below):
            raise ParamsError(f"parameter {name}={value!r} must be in {interval}")


def nonempty(params: Params, *names: str) -> None:
    """Raise `ParamsError` when a named list parameter is empty."""
    for name in names:
        if not getattr(params, name):
            raise ParamsError(f"parameter {name} must name at least one entry")


def readings_text(params: Params, authors: Mapping[str, Any]) -> str:
    """One sentence for the page: each reading parameter's value and whether it is the authors' code's.

    authors: parameter name -> the value that reads the choice as the authors' code does (residual_lib.paper.protocol).
    """
    parts = [f"{name}={getattr(params, name)!r} ("
             + ("the authors' code" if getattr(params, name) == value else f"the authors' code: {value!r}") + ")"
             for name, value in authors.items()]
    return "; ".join(parts)


@dataclass
class Result:
    """What `run` returns: tidy tables, the numbers a page quotes by name, and objects its plots draw."""

    params: Params
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    findings: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
