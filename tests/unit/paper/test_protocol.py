"""The protocol table: every offered option exists with the stated default, every profile value is valid."""

import importlib
import inspect
import re

import pytest

from residual_lib.paper.protocol import CHOICES, protocol_table

OFFERED = [c for c in CHOICES if c.option]


def _target(option: str):
    module, func, keyword = re.fullmatch(r"([\w.]+)\.(\w+)\((\w+)\)", option).groups()
    return getattr(importlib.import_module(f"residual_lib.{module}"), func), keyword


@pytest.mark.parametrize("choice", OFFERED, ids=[c.topic for c in OFFERED])
def test_option_exists_with_the_stated_library_default(choice):
    func, keyword = _target(choice.option)
    parameter = inspect.signature(func).parameters[keyword]
    if parameter.default is not inspect.Parameter.empty:
        assert parameter.default == choice.library_default
    if choice.values:
        assert choice.paper_profile in choice.values and choice.toy_profile in choice.values
        assert choice.library_default in choice.values


def test_dataset_and_protocol_values_are_accepted():
    from residual_lib.data.datasets import dataset_spec
    from residual_lib.alignment.selection import HEAD_SCORES
    from residual_lib.analysis.spectral import MATCHINGS
    from residual_lib.data.templates import PROMPT_CHOICES
    from residual_lib.alignment.training import PROTOCOLS

    by_option = {c.option: c.values for c in OFFERED}
    assert set(by_option["analysis.spectral.unit_similarities(matching)"]) == set(MATCHINGS)
    assert set(by_option["alignment.selection.head_scores(head_score)"]) == set(HEAD_SCORES)
    assert set(by_option["alignment.training.protocol_config(protocol)"]) == set(PROTOCOLS)
    assert set(by_option["alignment.tasks.load_task(prompts)"]) == set(PROMPT_CHOICES)
    for name in by_option["data.datasets.load_dataset(name)"]:
        dataset_spec(name)


def test_table_has_one_row_per_choice_and_the_columns_the_page_needs():
    table = protocol_table()
    assert len(table) == len(CHOICES) and table["topic"].is_unique
    assert {"topic", "paper_text", "authors_code", "authors_path", "option", "values", "library_default",
            "paper_profile", "toy_profile", "notes"} <= set(table.columns)
    assert table.loc[table["topic"].str.startswith("Spectral"), "values"].item() == "cosine | weighted | index"


def test_figure_2s_ratio_reading_names_both_of_the_authors_notebooks():
    """The authors' notebook took the mean of per-head ratios in its code release (13b306c) and the ratio of the
    layer means from 1fd5654 on; the paper's printed table cannot be a ratio of its own means, so the paper profile
    sets the release's reading."""
    from residual_lib.analysis.intrinsic_dim import paper_ratio_check
    from residual_lib.paper.reference import reference

    choice = next(c for c in CHOICES if c.topic == "Figure 2 ratio column")
    assert "13b306c" in choice.authors_code and "1fd5654" in choice.authors_code
    assert (~paper_ratio_check(reference("fig2"))["matches_ratio_of_means"]).any()
    assert choice.paper_profile == "mean_of_heads" != choice.values[1]
