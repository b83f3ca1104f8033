"""`page.show`: the tables every page displays."""

import pandas as pd
import pytest

from residual_lib.book import page


@pytest.fixture
def shown(monkeypatch) -> list[str]:
    """The HTML each `page.show` call displays."""
    import IPython.display

    out: list[str] = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: out.append(obj.data))
    return out


def test_show_hides_a_numeric_index_and_rounds(shown):
    page.show(pd.DataFrame({"method": ["RD"], "accuracy": [0.123456]}), caption="Accuracy", decimals=2)
    html = shown[0]
    assert "0.12" in html and "0.123" not in html and "Accuracy" in html
    assert "row_heading" not in html and 'class="fit-column"' not in html


def test_show_fit_marks_the_table_for_the_column_wide_style(shown):
    page.show(pd.DataFrame({"topic": ["a long sentence"]}), fit=True)
    assert 'class="fit-column"' in shown[0]
