"""Tables in a page: shown without their numeric index, without truncated text, optionally captioned."""

from __future__ import annotations

import pandas as pd


def show(table: pd.DataFrame, caption: str | None = None, decimals: int | None = 3, fit: bool = False) -> None:
    """Display a table without its numeric index and without truncated text, optionally captioned.

    fit: wrap the cells to the page's column (a table of sentences), instead of the table's natural width.
    """
    from IPython.display import HTML, display

    frame = table.round(decimals) if decimals is not None else table
    styled = frame.style.format(precision=decimals if decimals is not None else 6, na_rep="",
                                thousands=",")
    if fit:
        styled = styled.set_table_attributes('class="fit-column"')
    if isinstance(frame.index, pd.RangeIndex):
        styled = styled.hide(axis="index")
    if caption:
        styled = styled.set_caption(caption)
    display(HTML(styled.to_html()))


def show_present(tables: dict[str, pd.DataFrame], captions: dict[str, str], decimals: int | None = 3) -> None:
    """`show` each table of `captions` that the result has (tables a build computes only in some settings)."""
    for key, caption in captions.items():
        if key in tables:
            show(tables[key], caption=caption, decimals=decimals)
