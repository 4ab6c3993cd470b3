"""The one way the CLI prints a table: rows go into a pandas DataFrame, which renders them as text.

Every cell is turned into text first (a column's formatter, else `cell_text`), so that missing
values read "-" everywhere and all columns are left-aligned with their headers, whatever their type.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

MISSING = "-"


def cell_text(value: Any) -> str:
    """The default text of a cell: "-" for None/NaN, 4 significant digits for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    columns: Sequence[str] | None = None,
    formats: Mapping[str, Callable[[Any], str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """`rows` (dicts or a DataFrame) as aligned text: `columns` in that order (default: all),
    `formats` per column (value -> text), `headers` renames columns for display."""
    # dtype=object: an int column with a missing cell stays ints (pandas would make it floats)
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=columns, dtype=object)
    columns = list(columns if columns is not None else frame.columns)
    formats = formats or {}
    text = pd.DataFrame(
        {column: [_text(v, formats.get(column)) for v in frame[column]] if column in frame else [] for column in columns},
        columns=columns,
    )
    text.columns = [(headers or {}).get(column, column) for column in columns]
    empty = text.empty
    if empty:  # pandas prints "Empty DataFrame" for no rows; render a blank row and drop it
        text = pd.DataFrame([[""] * len(text.columns)], columns=text.columns)
    widths = {name: max([len(name), *map(len, text[name])]) for name in text.columns}
    # one extra space per cell: columns end up two spaces apart
    rendered = text.to_string(
        index=False, justify="left", formatters={name: _left(widths[name] + 1) for name in text.columns}
    )
    lines = [line.rstrip() for line in rendered.splitlines()]
    return "\n".join(lines[:1] if empty else lines)


def _text(value: Any, formatter: Callable[[Any], str] | None) -> str:
    if formatter is None or value is None or (isinstance(value, float) and math.isnan(value)):
        return cell_text(value)
    return formatter(value)


def _left(width: int) -> Callable[[str], str]:
    return lambda value: value.ljust(width)
