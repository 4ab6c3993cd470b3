"""One CSV per board: measured rows (real, then synthetic) and the published rows, one schema.

The `section` column keeps real, published and synthetic rows apart for anyone filtering the
file; missing values are empty cells so pandas reads them back as NaN.
"""

from __future__ import annotations

import csv
import io

import pandas as pd

from suite.leaderboard.boards import NEUROBENCH_COLUMNS, RESULT_COLUMNS, Board
from suite.leaderboard.formatting import integer, machine
from suite.leaderboard.references import citation

# `data` is the board's `data_kind` (real rows, synthetic rows, or "published" for the references).
CSV_COLUMNS = ("section", *RESULT_COLUMNS, "data", "seeds", "run_ids", "source")
SECTION_REAL, SECTION_REFERENCE, SECTION_SYNTHETIC = "real", "reference", "synthetic"


def _measured_rows(table: pd.DataFrame, section: str) -> list[dict]:
    return [
        {
            "section": section,
            "rank": integer(r.rank, ""),
            "model": r.model,
            "time_steps": integer(r.time_steps, ""),
            "params_m": machine(r.params_m),
            "top1_mean": machine(r.top1_mean),
            "top1_std": machine(r.top1_std),
            "top1_n": integer(r.top1_n, ""),
            "top1_final": machine(r.top1_final),
            "top5": machine(r.top5),
            "sops_g": machine(r.sops_g),
            "energy_mj": machine(r.energy_mj),
            "firing_rate": machine(r.firing_rate),
            "samples_per_s": machine(r.samples_per_s),
            "epochs": integer(r.epochs, ""),
            "kind": r.kind,
            "checkpoint": r.checkpoint,
            **{column: machine(getattr(r, column)) for column in NEUROBENCH_COLUMNS},
            "data": r.data_kind,
            "seeds": r.seeds,
            "run_ids": r.run_ids,
            "source": "mlflow",
        }
        for r in table.itertuples(index=False)
    ]


def _reference_rows(references: pd.DataFrame) -> list[dict]:
    return [
        {
            "section": SECTION_REFERENCE,
            "model": r.model,
            "time_steps": integer(r.time_steps, ""),
            "params_m": machine(r.params_m),
            "top1_mean": machine(r.top1),
            "energy_mj": machine(r.energy_mj),
            "data": "published",
            "source": citation(r),
        }
        for r in references.itertuples(index=False)
    ]


def board_rows(board: Board) -> list[dict]:
    """All rows of a board as CSV-ready strings (also what gets logged as an MLflow table)."""
    rows = _measured_rows(board.real, SECTION_REAL)
    rows += _reference_rows(board.references)
    rows += _measured_rows(board.synthetic, SECTION_SYNTHETIC)
    return [{column: row.get(column, "") for column in CSV_COLUMNS} for row in rows]


def render_csv(board: Board) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(board_rows(board))
    return buffer.getvalue()
