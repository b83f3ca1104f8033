"""The toy world page defines every task the Section 4 pages run, read from their parameter files."""

import shutil

import pytest
import yaml

from residual_lib.data.datasets import dataset_spec
from residual_lib.experiments import toy_world
from residual_lib.paths import REPO_ROOT
from experiment_smoke import declared_defaults


def test_params_defaults_are_the_notebooks_parameters_cell():
    assert toy_world.Params().to_dict() == declared_defaults(REPO_ROOT / "notebooks" / "toy_world.py")


def _project(tmp_path, params: dict[str, str]):
    """A project holding the two Section 4 notebooks and the given toy-profile parameter files."""
    folder = tmp_path / "notebooks" / "params" / "toy"
    folder.mkdir(parents=True)
    for page in toy_world.SECTION4_PAGES:
        shutil.copy(REPO_ROOT / "notebooks" / f"{page}.py", tmp_path / "notebooks" / f"{page}.py")
        (folder / f"{page}.yaml").write_text(params.get(page, "{}\n"))
    return tmp_path


def test_section4_tasks_are_both_pages_datasets_in_order_each_once(tmp_path):
    root = _project(tmp_path, {"tab01_coarse_unit_alignment": "datasets: [toy-b, toy-a]\n",
                               "fig05_tab02_residual_alignment": "datasets: [toy-a, toy-c]\n"})
    assert toy_world.section4_tasks("toy", root) == ["toy-b", "toy-a", "toy-c"]


def test_section4_tasks_fall_back_to_a_pages_own_default(tmp_path):
    """A parameter file without `datasets` runs the notebook's (the experiment's) default list."""
    from residual_lib.experiments import fig05_tab02, tab01

    root = _project(tmp_path, {"tab01_coarse_unit_alignment": "datasets: [toy-sketch-3px]\n"})
    expected = ["toy-sketch-3px"] + [d for d in fig05_tab02.Params().datasets if d != "toy-sketch-3px"]
    assert toy_world.section4_tasks("toy", root) == expected
    assert tab01.Params().datasets != ["toy-sketch-3px"]


@pytest.mark.slow
def test_the_page_defines_every_section4_task_of_the_toy_profile(smoke_artifacts):
    """Every task in the toy profile's Table 1 and Figure 5 parameter files is a row of the page's task table, with its
    chance, zero-shot accuracy inside its interval, and example images labelled by its class names."""
    wanted = []
    for page in toy_world.SECTION4_PAGES:
        text = (REPO_ROOT / "notebooks" / "params" / "toy" / f"{page}.yaml").read_text()
        wanted += [d for d in yaml.safe_load(text)["datasets"] if d not in wanted]
    p = toy_world.Params(model_name="toy-clip-smoke", training_profile="smoke", tasks=["toy-shape"], ood=["toy-noise"],
                         n_eval=60, n_samples=3, n_examples=4, section4_profile="toy")
    result = toy_world.run(p)
    table = result.tables["section4"]
    assert list(table["task"]) == wanted
    for row in table.to_dict("records"):
        spec = dataset_spec(row["task"])
        assert row["chance"] == pytest.approx(1 / spec.n_classes) and row["classes"] == ", ".join(spec.class_names)
        low, high = (float(x) for x in row["95% interval"].split(" to "))
        assert low <= row["zero-shot"] <= high and row["test images"] == 60
    images, titles, tasks = result.artifacts["section4_examples"]
    assert tasks == wanted and len(images) == len(titles) == 4 * len(wanted)
    for k, task in enumerate(wanted):
        assert set(titles[4 * k:4 * k + 4]) <= set(dataset_spec(task).class_names)
    assert list(result.tables["zero_shot"]["dataset"]) == ["toy-shape", "toy-noise"]
    assert result.findings["n_section4"] == len(wanted)
