"""One Markdown page per board: ranked real-data runs, the published rows, then synthetic runs."""

from __future__ import annotations

import pandas as pd

from suite.leaderboard.boards import Board
from suite.leaderboard.formatting import (
    DASH,
    NEUROBENCH_HEADER,
    adaptive,
    fixed,
    has_neurobench,
    integer,
    model_label,
    neurobench_cells,
    short_ids,
    top1_cell,
)
from suite.leaderboard.references import citation

RANKING_NOTE = (
    "Ranked on top-1 (%): each run's best top-1 over its epochs (`best_top1`; its final top-1 if "
    "best_top1 was not logged), as mean ± sample std over the seeds of one config (n = seeds). "
    "Final top-1, top-5, SOPs, energy, firing rate, samples/s and params are means over those seeds. "
    f"{DASH} = not measured. A model marked [eval sha256:…] is a `suite eval` of that checkpoint, "
    "not a model trained in the suite; NB columns are NeuroBench's metrics (`suite eval --neurobench`)."
)
MEASURED_HEADER = (
    "rank", "model", "T", "params (M)", "top-1 (%)", "final top-1 (%)", "top-5 (%)", "SOPs (G)",
    "energy (mJ)", "firing rate", "samples/s", "epochs", "runs",
)
REFERENCE_HEADER = ("model", "T", "params (M)", "top-1 (%)", "energy (mJ)", "source")


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_escape(cell) for cell in row) + " |" for row in rows]
    return lines


def _measured(table: pd.DataFrame, with_data: bool = False) -> list[str]:
    rows = []
    neurobench = has_neurobench(table)
    for r in table.itertuples(index=False):
        row = [
            integer(r.rank),
            model_label(r.model, r.kind, r.checkpoint),
            integer(r.time_steps),
            fixed(r.params_m, 2),
            top1_cell(r.top1_mean, r.top1_std, r.top1_n),
            fixed(r.top1_final, 2),
            fixed(r.top5, 2),
            adaptive(r.sops_g),
            adaptive(r.energy_mj),
            fixed(r.firing_rate, 3),
            fixed(r.samples_per_s, 1),
            integer(r.epochs),
            short_ids(r.run_ids),
        ]
        if with_data:
            row.insert(2, r.data_kind)
        if neurobench:
            row += neurobench_cells(r)
        rows.append(row)
    header = MEASURED_HEADER[:2] + ("data",) + MEASURED_HEADER[2:] if with_data else MEASURED_HEADER
    return _table(header + (NEUROBENCH_HEADER if neurobench else ()), rows)


def _references(references: pd.DataFrame) -> list[str]:
    rows = [
        [r.model, integer(r.time_steps), fixed(r.params_m, 2), fixed(r.top1, 2), adaptive(r.energy_mj), citation(r)]
        for r in references.itertuples(index=False)
    ]
    return _table(REFERENCE_HEADER, rows)


def render_markdown(board: Board) -> str:
    lines = [f"# Leaderboard: {board.task} (protocol: {board.protocol})", "", RANKING_NOTE, ""]
    lines += ["## Real data", ""]
    lines += _measured(board.real) if not board.real.empty else ["No finished real-data runs yet."]
    lines += ["", "## Published results", ""]
    lines += _references(board.references) if not board.references.empty else ["None on file."]
    if not board.synthetic.empty:
        lines += [
            "",
            "## Synthetic data (not comparable)",
            "",
            (
                "Runs on generated data (or without a data tag) check that the pipeline works; their "
                "accuracy says nothing about the model and is never ranked with real data."
            ),
            "",
        ]
        lines += _measured(board.synthetic, with_data=True)
    notes = board.notes()
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
