"""The published results: `leaderboards/references.csv` is their one home.

Boards, `suite tasks`, `suite models` and the tests read them from here; nothing else states a
published number. Each row is either `primary` (its `source` names the paper, its `table` the
table the number is printed in) or `secondary` (the number was found only in a listing that
collects results, named in `source`; `table` says what is known of its origin). Boards label
secondary rows as such.

The default file ships inside the installed package `leaderboards` and is read through
importlib.resources, so a wheel install finds it; `--references FILE` reads another one.
"""

from __future__ import annotations

import csv
import io
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from suite.errors import CorruptDataError, DataNotFoundError

REFERENCE_COLUMNS = ("task", "protocol", "model", "time_steps", "params_m", "top1", "energy_mj", "kind", "source", "table")
REQUIRED_TEXT = ("task", "protocol", "model", "kind", "source", "table")
OPTIONAL_NUMBERS = ("time_steps", "params_m", "energy_mj")
KINDS = ("primary", "secondary")
DEFAULT_NAME = "references.csv"


def default_references_path():
    """The shipped references.csv (an importlib.resources Traversable; a Path in a normal install)."""
    return resources.files("leaderboards").joinpath(DEFAULT_NAME)


def citation(row) -> str:
    """How a board cites a row: "paper, Table N", or the listing marked as secondary."""
    if row.kind == "secondary":
        return f"secondary: {row.source} ({row.table})"
    return f"{row.source}, {row.table}"


def _number(value: str, column: str, where: str) -> float:
    if value.strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise CorruptDataError(f"{where}: column {column!r} holds {value!r}, which is not a number") from None


def load_references(path: str | Path | None = None) -> pd.DataFrame:
    """Rows with REFERENCE_COLUMNS; empty numeric cells become NaN. Bad rows name file and line."""
    if path is None:
        return _load_default().copy()
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"reference results file {path} not found; pass --references FILE with the columns "
            f"{', '.join(REFERENCE_COLUMNS)}"
        )
    return _parse(path.read_text(encoding="utf-8"), str(path))


@lru_cache(maxsize=1)
def _load_default() -> pd.DataFrame:
    file = default_references_path()
    return _parse(file.read_text(encoding="utf-8"), f"leaderboards/{DEFAULT_NAME}")


def _parse(text: str, origin: str) -> pd.DataFrame:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REFERENCE_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise CorruptDataError(f"{origin}: header lacks column(s) {missing}; expected {', '.join(REFERENCE_COLUMNS)}")
    rows = []
    for line, raw in enumerate(reader, start=2):
        where = f"{origin}:{line}"
        row = {c: (raw[c] or "").strip() for c in REQUIRED_TEXT}
        empty = [c for c in REQUIRED_TEXT if not row[c]]
        if empty:
            raise CorruptDataError(
                f"{where}: empty {empty}; every reference names its paper (source) and table, or, with "
                "kind 'secondary', the listing it was found in and what is known of its origin"
            )
        if row["kind"] not in KINDS:
            raise CorruptDataError(f"{where}: kind {row['kind']!r} is not one of {', '.join(KINDS)}")
        row["top1"] = _number(raw["top1"] or "", "top1", where)
        if math.isnan(row["top1"]):
            raise CorruptDataError(f"{where}: empty 'top1'; a reference without an accuracy says nothing")
        for column in OPTIONAL_NUMBERS:
            row[column] = _number(raw[column] or "", column, where)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))


def task_references(task: str) -> pd.DataFrame:
    """The shipped rows of one task."""
    refs = _load_default()
    return refs[refs["task"] == task].reset_index(drop=True)


def model_references(model: str) -> str:
    """One model's published top-1 per task, e.g. "cifar10 95.19, cifar100 77.86" ("" if none);
    a task with rows at several T lists them as "cifar10-dvs 80.9 (T=16), 78.9 (T=10)"."""
    refs = _load_default()
    chosen = refs[refs["model"] == model]
    parts = []
    for task, rows in chosen.groupby("task", sort=False):
        if len(rows) == 1:
            parts.append(f"{task} {rows['top1'].iloc[0]:g}")
        else:
            parts.append(f"{task} " + ", ".join(f"{r.top1:g} (T={r.time_steps:g})" for r in rows.itertuples(index=False)))
    return ", ".join(parts)
