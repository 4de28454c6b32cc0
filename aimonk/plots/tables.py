"""Tables as a notebook shows them: each number formatted for its kind (scores to 3 decimals, rates as %,
counts whole, NaN as —), names escaped as HTML."""
from __future__ import annotations

import pandas as pd

PERCENT = ("positive_rate", "share")
COUNTS = ("positives", "known", "images", "positive", "negative", "NA", "epoch")


def styled(frame: pd.DataFrame, gradient=()):
    """`frame` as a pandas Styler: each numeric column formatted by its kind (whole numbers for integer columns
    and counts), NaN shown as —, the index and the text escaped (a name holding HTML shows as written), an
    unnamed index of row numbers left out; `gradient`: columns of scores in [0, 1] shaded."""
    numbers = frame.select_dtypes("number").columns
    formats = {column: _number_format(column, frame[column]) if column in numbers else _as_written
               for column in frame.columns}
    style = frame.style.format(formats, na_rep="—", escape="html").format_index(escape="html")
    if frame.index.name is None and pd.api.types.is_integer_dtype(frame.index):
        style = style.hide(axis="index")  # row numbers beside the table's own columns say nothing
    if len(gradient):
        style = style.background_gradient(subset=list(gradient), vmin=0, vmax=1, cmap="Greens")
    return style


def _as_written(value):
    """A number in a column of mixed values (a configuration's) as Python writes it: 0.4, not 0.400000."""
    return f"{value:g}" if isinstance(value, float) else value


def _number_format(column, values: pd.Series) -> str:
    if column in COUNTS or pd.api.types.is_integer_dtype(values):
        return "{:.0f}"
    return "{:.1%}" if column in PERCENT else "{:.3f}"


def rounded(names, values, digits: int = 2) -> str:
    """'name value, ...' with each value to `digits` decimals: thresholds as a line of text reads them."""
    return ", ".join(f"{name} {float(value):.{digits}f}" for name, value in zip(names, values))
