"""Tables print numbers at the precision they have and never leave a cell blank without saying why."""

import re

import numpy as np
import pandas as pd
import pytest

from residual_lib.report import tables


@pytest.fixture
def shown(monkeypatch):
    """The HTML of each table `tables.show` displays."""
    import IPython.display

    html = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: html.append(obj.data))
    return html


def cells(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", html, flags=re.S)]


def test_counts_print_as_integers_and_paper_values_at_their_own_precision(shown):
    table = pd.DataFrame({"method": ["Lin", "RD"], "params": [65536.0, 256.0], "paper": [0.94, 0.97],
                          "ours": [0.93812, 0.5]})
    tables.show(table)
    assert cells(shown[0]) == ["Lin", "65,536", "0.94", "0.938", "RD", "256", "0.97", "0.500"]


def test_a_missing_value_is_a_dash_and_the_caption_says_why(shown):
    table = pd.DataFrame({"unit": ["L1.H2", "L1.H3"], "unnamed_skill": [np.nan, 0.25], "text": ["", "red"]})
    tables.show(table, caption="Probe check", missing="the descriptions name every attribute")
    assert cells(shown[0]) == ["L1.H2", tables.MISSING, tables.MISSING, "L1.H3", "0.25", "red"]
    assert "Probe check. — : the descriptions name every attribute".replace(" :", ":") in shown[0]
    tables.show(table.dropna())
    assert "<caption" not in shown[1]


def test_a_code_like_header_may_wrap_after_its_underscores(shown):
    tables.show(pd.DataFrame({"text_attribute_skill": [0.5], "a<b": [1.0]}))
    assert "text_<wbr>attribute_<wbr>skill" in shown[0] and "a&lt;b" in shown[0]


def test_a_fitted_table_wraps_code_names_at_their_separators_only(shown):
    tables.show(pd.DataFrame({"option": ["alignment.selection.head_scores(head_score)"], "effect": ["0.410 -> 0.240"]}),
                fit=True)
    assert "alignment.<wbr>selection.<wbr>head_<wbr>scores(head_<wbr>score)" in shown[0]
    assert "0.410 -&gt; 0.240" in shown[0]
