"""Runs -> boards: one per (task, protocol), seeds of one config aggregated, configs ranked.

Ranking number: a run's best top-1 over its epochs (`best_top1`, the number papers report),
falling back to its final top-1 when best_top1 was never logged. Seeds of one config (same
config-hash tag, or same model/T/epochs/data kind when the tag is missing) become one row holding
the mean, the sample standard deviation (ddof=1; none for a single seed) and n. Rows are ranked by
that mean, highest first; equal means share a rank ("1, 2, 2, 4"). Real-data rows and the others
(synthetic or unlabelled data) are ranked separately and never share a table.

Evaluations (`suite eval`, kind "eval") are rows of their own beside the trained runs, ranked
with them on the same data kind: one row per checkpoint (sha256) and config, repeated evaluations
of it aggregated like seeds; their top-1 is the evaluated one (there is no best-of-epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from suite import schema
from suite.leaderboard.collect import DEFAULT_PROTOCOL, CollectedRuns

REAL = "real"
# Per-run metrics averaged over the seeds of a config.
NEUROBENCH_COLUMNS = (
    "nb_effective_acs", "nb_effective_macs", "nb_dense", "nb_activation_sparsity", "nb_connection_sparsity",
    "nb_footprint_bytes",
)
MEAN_COLUMNS = ("top1_final", "top5", "sops_g", "energy_mj", "firing_rate", "params_m", "samples_per_s", *NEUROBENCH_COLUMNS)
# A ranked row's results in display order: the one list both the board rows and their CSV /
# MLflow-table export are built from, so the two cannot drift apart.
RESULT_COLUMNS = (
    "rank",
    "model",
    "time_steps",
    "params_m",
    "top1_mean",
    "top1_std",
    "top1_n",
    "top1_final",
    "top5",
    "sops_g",
    "energy_mj",
    "firing_rate",
    "samples_per_s",
    "epochs",
    "kind",
    "checkpoint",
    *NEUROBENCH_COLUMNS,
)
ROW_COLUMNS = (*RESULT_COLUMNS, "data_kind", "seeds", "run_ids", "config_key")
# Means within this distance rank equal: float noise must not split a tie.
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Board:
    task: str
    protocol: str
    real: pd.DataFrame  # ROW_COLUMNS, ranked
    synthetic: pd.DataFrame  # ROW_COLUMNS, ranked among themselves
    references: pd.DataFrame  # suite.leaderboard.references.REFERENCE_COLUMNS
    unfinished: dict[str, int] = field(default_factory=dict)  # status -> runs left out

    @property
    def slug(self) -> str:
        return f"{self.task}_{self.protocol}"

    @property
    def title(self) -> str:
        return f"{self.task} / {self.protocol}"

    @property
    def run_count(self) -> int:
        return sum(len(ids.split()) for ids in pd.concat([self.real, self.synthetic])["run_ids"])

    def notes(self) -> list[str]:
        notes = []
        if self.real.empty and self.synthetic.empty:
            notes.append(
                f"No finished runs for {self.task} ({self.protocol}) yet: only the published rows are shown. "
                f"Train one with `python -m suite run --task {self.task}` and regenerate."
            )
        if self.unfinished:
            counts = ", ".join(f"{n} {status}" for status, n in self.unfinished.items())
            total = sum(self.unfinished.values())
            notes.append(f"Excluded {total} unfinished run(s) ({counts}): only FINISHED runs are ranked.")
        if self.references.empty:
            notes.append("No published result is on file for this task and protocol.")
        return notes


def _config_key(row: pd.Series) -> str:
    if row["kind"] == schema.KIND_EVAL:  # a checkpoint is its own config: never merged with trained runs
        return f"{row['data_kind']}:eval:{row['checkpoint']}:{row['config_hash']}"
    if row["config_hash"]:
        return f"{row['data_kind']}:hash:{row['config_hash']}"
    return f"{row['data_kind']}:cfg:{row['model']}|{row['time_steps']}|{row['epochs']}"


def _nanmean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def _aggregate(group: pd.DataFrame) -> dict:
    top1 = group["top1_best"].where(group["top1_best"].notna(), group["top1_final"]).dropna()
    row = {
        "model": group["model"].iloc[0],
        "time_steps": group["time_steps"].iloc[0],
        "top1_mean": float(top1.mean()) if len(top1) else math.nan,
        "top1_std": float(top1.std(ddof=1)) if len(top1) >= 2 else math.nan,
        "top1_n": len(top1),
        "epochs": float(group["epochs"].max()) if group["epochs"].notna().any() else math.nan,
        "data_kind": group["data_kind"].iloc[0],
        "kind": group["kind"].iloc[0],
        "checkpoint": group["checkpoint"].iloc[0],
        "seeds": " ".join(sorted({str(s) for s in group["seed"] if str(s)}, key=_seed_order)),
        "run_ids": " ".join(sorted(group["run_id"])),
    }
    if math.isnan(row["epochs"]):
        # No `epochs` param: the last logged epoch metric is the best remaining evidence.
        row["epochs"] = float(group["last_epoch"].max()) if group["last_epoch"].notna().any() else math.nan
    for column in MEAN_COLUMNS:
        row[column] = _nanmean(group[column])
    return row


def _seed_order(seed: str) -> tuple:
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def rank_configs(runs: pd.DataFrame) -> pd.DataFrame:
    """Aggregate the runs of one board section over seeds and rank the configs."""
    if runs.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ROW_COLUMNS})
    runs = runs.sort_values("run_id", kind="stable")
    keys = runs.apply(_config_key, axis=1)
    rows = []
    for key in sorted(set(keys)):
        row = _aggregate(runs[keys == key])
        row["config_key"] = key
        rows.append(row)
    table = pd.DataFrame(rows)
    table["_missing"] = table["top1_mean"].isna()
    table["_neg_top1"] = -table["top1_mean"]
    table["_t"] = table["time_steps"].fillna(np.inf)
    table = table.sort_values(["_missing", "_neg_top1", "model", "_t", "epochs", "config_key"], kind="stable")
    means = table["top1_mean"].to_numpy()
    table["rank"] = [
        math.nan if math.isnan(m) else float(1 + np.sum(means[~np.isnan(means)] > m + TIE_TOLERANCE))
        for m in means
    ]
    return table[list(ROW_COLUMNS)].reset_index(drop=True)


def _references_for(references: pd.DataFrame, task: str, protocol: str) -> pd.DataFrame:
    chosen = references[(references["task"] == task) & (references["protocol"] == protocol)]
    # Published rows best-first too, so the eye reads both tables the same way.
    order = chosen.assign(_neg=-chosen["top1"], _t=chosen["time_steps"].fillna(np.inf))
    order = order.sort_values(["_neg", "model", "_t"], kind="stable")
    return order.drop(columns=["_neg", "_t"]).reset_index(drop=True)


def build_boards(
    collected: CollectedRuns, references: pd.DataFrame, task: str | None = None
) -> list[Board]:
    """Every (task, protocol) with runs or a published result, sorted by task then protocol."""
    if task is not None:
        references = references[references["task"] == task]
    runs, unfinished = collected.runs, collected.unfinished
    keys = set(zip(runs["task"], runs["protocol"]))
    keys |= set(zip(unfinished["task"], unfinished["protocol"]))
    keys |= set(zip(references["task"], references["protocol"]))
    if task is not None:
        keys = {k for k in keys if k[0] == task}
        if not keys:
            keys = {(task, DEFAULT_PROTOCOL)}
    boards = []
    for board_task, protocol in sorted(keys):
        mine = runs[(runs["task"] == board_task) & (runs["protocol"] == protocol)]
        left_out = unfinished[(unfinished["task"] == board_task) & (unfinished["protocol"] == protocol)]
        boards.append(
            Board(
                task=board_task,
                protocol=protocol,
                real=rank_configs(mine[mine["data_kind"] == REAL]),
                synthetic=rank_configs(mine[mine["data_kind"] != REAL]),
                references=_references_for(references, board_task, protocol),
                unfinished={status: int(n) for status, n in sorted(left_out["status"].value_counts().items())},
            )
        )
    return boards
