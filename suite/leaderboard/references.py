"""The published results shown beside measured runs, read from leaderboards/references.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from suite.errors import CorruptDataError, DataNotFoundError

REFERENCE_COLUMNS = ("task", "protocol", "model", "time_steps", "params_m", "top1", "energy_mj", "source")
REQUIRED_TEXT = ("task", "protocol", "model", "source")
OPTIONAL_NUMBERS = ("time_steps", "params_m", "energy_mj")


def default_references_path() -> Path:
    """leaderboards/references.csv of the source tree the suite runs from."""
    return Path(__file__).resolve().parents[2] / "leaderboards" / "references.csv"


def _number(value: str, column: str, where: str) -> float:
    if value.strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise CorruptDataError(f"{where}: column {column!r} holds {value!r}, which is not a number") from None


def load_references(path: str | Path | None = None) -> pd.DataFrame:
    """Rows with REFERENCE_COLUMNS; empty numeric cells become NaN. Bad rows name file and line."""
    path = Path(path) if path is not None else default_references_path()
    if not path.is_file():
        raise DataNotFoundError(
            f"reference results file {path} not found; pass --references FILE with the columns "
            f"{', '.join(REFERENCE_COLUMNS)}"
        )
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REFERENCE_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise CorruptDataError(
                f"{path}: header lacks column(s) {missing}; expected {', '.join(REFERENCE_COLUMNS)}"
            )
        rows = []
        for line, raw in enumerate(reader, start=2):
            where = f"{path}:{line}"
            row = {c: (raw[c] or "").strip() for c in REQUIRED_TEXT}
            empty = [c for c in REQUIRED_TEXT if not row[c]]
            if empty:
                raise CorruptDataError(f"{where}: empty {empty}; every reference needs them")
            row["top1"] = _number(raw["top1"] or "", "top1", where)
            if math.isnan(row["top1"]):
                raise CorruptDataError(f"{where}: empty 'top1'; a reference without an accuracy says nothing")
            for column in OPTIONAL_NUMBERS:
                row[column] = _number(raw[column] or "", column, where)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))
