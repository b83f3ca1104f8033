"""Tables in a page: shown without their numeric index, without truncated text, optionally captioned.

Numbers print at the precision they have (at most `decimals`): a count as 65,536, the paper's 0.94 as 0.94, not
0.940. A missing value prints as a dash and the caption says why (`missing`), so no cell is blank unexplained.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

MISSING = "—"


def name_any_model(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Claim verdict rows with "any model" in the model column of claims about no model in particular (blank there)."""
    return verdicts.replace({"model": {"": "any model"}})


def precision(values: pd.Series, decimals: int) -> int:
    """The fewest decimals (<= `decimals`) that print every value of a float column as it is, rounded to
    `decimals`: 0 for counts, 2 for the paper's two-decimal accuracies."""
    rounded = values.dropna().to_numpy(dtype=float).round(decimals)
    return next((d for d in range(decimals) if np.allclose(rounded.round(d), rounded, rtol=0, atol=1e-9)), decimals)


CODE_SEPARATOR = re.compile(r"(?<=[A-Za-z0-9_)])([._])(?=[A-Za-z])")


def breakable(value) -> str:
    """A cell's text as HTML that may wrap after the dots and underscores of code names (never inside a word)."""
    return CODE_SEPARATOR.sub(r"\1<wbr>", html.escape(str(value)))


def show(table: pd.DataFrame, caption: str | None = None, decimals: int | None = 3, fit: bool = False,
         missing: str = "no value in this build") -> None:
    """Display a table without its numeric index and without truncated text, optionally captioned.

    fit: wrap the cells to the page's column (a table of sentences), instead of the table's natural width.
    missing: why a cell has no value; said in the caption when one does.
    """
    from IPython.display import HTML, display

    frame = table.round(decimals) if decimals is not None else table
    frame = frame.replace("", np.nan)  # an empty string is as blank as a missing value
    digits = {c: precision(frame[c], decimals if decimals is not None else 6)
              for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    styled = frame.style.format(na_rep=MISSING, thousands=",", precision=decimals if decimals is not None else 6)
    styled = styled.format({c: f"{{:,.{d}f}}" for c, d in digits.items()}, na_rep=MISSING)
    # a code-like header (text_attribute_skill) may wrap after an underscore: the widest headers set a table's width
    styled = styled.format_index(breakable, axis=1)
    if fit:  # sentences and code names in a column's width: code names wrap at their separators
        styled = styled.set_table_attributes('class="fit-column"').format(
            {c: breakable for c in frame.columns if c not in digits}, na_rep=MISSING)
    if isinstance(frame.index, pd.RangeIndex):
        styled = styled.hide(axis="index")
    if frame.isna().to_numpy().any():
        caption = f"{caption + '. ' if caption else ''}{MISSING}: {missing}"
    if caption:
        styled = styled.set_caption(caption)
    display(HTML(styled.to_html()))


def show_present(tables: dict[str, pd.DataFrame], captions: dict[str, str], decimals: int | None = 3) -> None:
    """`show` each table of `captions` that the result has (tables a build computes only in some settings)."""
    for key, caption in captions.items():
        if key in tables:
            show(tables[key], caption=caption, decimals=decimals)
