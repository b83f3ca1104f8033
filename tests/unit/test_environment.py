"""environment.yml (conda users) and pyproject.toml (pip, make setup) pin the same packages."""

import re
import tomllib

import yaml

from residual_lib.paths import REPO_ROOT


def normalise(requirement: str) -> str:
    """'Open_Clip.Torch == 3.3.0' -> 'open-clip-torch==3.3.0' (PEP 503 name, no spaces)."""
    name, rest = re.match(r"^\s*([A-Za-z0-9._-]+)(.*)$", requirement).groups()
    return re.sub(r"[-_.]+", "-", name).lower() + rest.replace(" ", "")


def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def conda_pip_requirements() -> list[str]:
    deps = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())["dependencies"]
    (pip,) = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    return [r for r in pip if not r.startswith("-e")]


def test_environment_yml_pins_exactly_pyprojects_dependencies_and_extras():
    project = pyproject()
    expected = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    ours = sorted(map(normalise, expected))
    conda = sorted(map(normalise, conda_pip_requirements()))
    assert conda == ours, (f"only in environment.yml: {sorted(set(conda) - set(ours))}; "
                           f"only in pyproject.toml: {sorted(set(ours) - set(conda))}")


def test_environment_yml_installs_the_package_and_a_python_pyproject_allows():
    deps = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())["dependencies"]
    (pip,) = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert "-e ." in pip
    (python,) = [d for d in deps if isinstance(d, str) and d.startswith("python=")]
    minor = python.split("=", 1)[1]
    assert pyproject()["requires-python"] == f">={minor},<3.{int(minor.split('.')[1]) + 1}"


def test_every_pin_is_exact():
    loose = [r for r in conda_pip_requirements() if "==" not in r]
    assert not loose, f"unpinned requirements in environment.yml: {loose}"
