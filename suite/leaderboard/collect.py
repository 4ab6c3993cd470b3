"""MLflow -> pandas: one normalised row per `suite run` or `suite eval` run, plus the unfinished.

Only runs tagged kind "run" (trained in the suite) or "eval" (a checkpoint evaluated; its row
carries the checkpoint's sha256) count; sweeps, trials and earlier leaderboards live in the same
store and are skipped by the search filter itself. Rows keep MLflow's last logged value of each
metric (the final epoch); a metric that was never logged is NaN, never an error.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from suite import schema
from suite.errors import TrackingError, UsageError
from suite.leaderboard.store import (
    check_reachable,
    fast_failing_mlflow,
    redact,
    store_exists,
)

log = logging.getLogger(__name__)

FINISHED = "FINISHED"
DEFAULT_PROTOCOL = "default"
SEARCH_PAGE_SIZE = 1000
TASK_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

# normalised column -> MLflow metric; the last logged value is what MLflow reports.
METRIC_COLUMNS = {
    "top1_final": schema.M_TOP1,
    "top1_best": schema.M_BEST_TOP1,
    "top5": schema.M_TOP5,
    "sops_g": schema.M_SOPS,
    "energy_mj": schema.M_ENERGY,
    "firing_rate": schema.M_FIRING_RATE,
    "params_m": schema.M_PARAMS,
    "samples_per_s": schema.M_SAMPLES_PER_S,
    "last_epoch": schema.M_EPOCH,
    # NeuroBench's metrics (`suite eval --neurobench`); synaptic operations per sample.
    "nb_effective_acs": schema.M_NB_EFFECTIVE_ACS,
    "nb_effective_macs": schema.M_NB_EFFECTIVE_MACS,
    "nb_dense": schema.M_NB_DENSE,
    "nb_activation_sparsity": schema.M_NB_ACTIVATION_SPARSITY,
    "nb_connection_sparsity": schema.M_NB_CONNECTION_SPARSITY,
    "nb_footprint_bytes": schema.M_NB_FOOTPRINT,
}
KINDS = (schema.KIND_RUN, schema.KIND_EVAL)
RUN_COLUMNS = (
    "run_id",
    "status",
    "kind",
    "checkpoint",  # an eval's checkpoint sha256, "" for a trained run
    "task",
    "protocol",
    "model",
    "time_steps",
    "data",
    "data_kind",
    "seed",
    "config_hash",
    "epochs",
    *METRIC_COLUMNS,
)


@dataclass(frozen=True)
class CollectedRuns:
    """FINISHED runs (`runs`) and the others (`unfinished`), both with RUN_COLUMNS."""

    runs: pd.DataFrame
    unfinished: pd.DataFrame
    tracking_uri: str

    @property
    def tasks(self) -> set[str]:
        return set(self.runs["task"]) | set(self.unfinished["task"])


def data_kind(data_tag: str | None) -> str:
    """"real" for `real:<fingerprint>`, "synthetic", or "unknown" when the tag is missing or odd.

    Only "real" rows are ranked beside the paper: anything unproven is kept apart.
    """
    if not data_tag:
        return "unknown"
    if data_tag.startswith("real"):
        return "real"
    if data_tag == schema.DATA_SYNTHETIC:
        return "synthetic"
    return "unknown"


def _as_int(value: str | float | None) -> float:
    try:
        return float(int(float(value)))
    except (TypeError, ValueError):
        return np.nan


def _run_row(run) -> dict:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    row = {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "kind": tags.get(schema.TAG_KIND, schema.KIND_RUN),
        "checkpoint": tags.get(schema.TAG_CHECKPOINT_SHA256, ""),
        "task": tags.get(schema.TAG_TASK, ""),
        "protocol": tags.get(schema.TAG_PROTOCOL) or DEFAULT_PROTOCOL,
        "model": tags.get(schema.TAG_MODEL, ""),
        "time_steps": _as_int(tags.get(schema.TAG_TIME_STEPS)),
        "data": tags.get(schema.TAG_DATA, ""),
        "data_kind": data_kind(tags.get(schema.TAG_DATA)),
        "seed": tags.get(schema.TAG_SEED, ""),
        "config_hash": tags.get(schema.TAG_CONFIG_HASH, ""),
        "epochs": _as_int(params.get("epochs")),
    }
    for column, metric in METRIC_COLUMNS.items():
        row[column] = float(metrics[metric]) if metric in metrics else np.nan
    return row


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in RUN_COLUMNS})


def _search_filter(task: str | None, kind: str = schema.KIND_RUN) -> str:
    # One search per kind: MLflow's filter has no IN for tags.
    parts = [f"tags.`{schema.TAG_KIND}` = '{kind}'"]
    if task is not None:
        if not TASK_NAME_RE.match(task):
            raise UsageError(f"--task {task!r}: task names contain only letters, digits, '_', '.' and '-'")
        parts.append(f"tags.`{schema.TAG_TASK}` = '{task}'")
    return " and ".join(parts)


def _search_all_runs(client, filter_string: str) -> list:
    from mlflow.entities import ViewType

    experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiment_ids:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=SEARCH_PAGE_SIZE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def collect_runs(tracking_uri: str, task: str | None = None) -> CollectedRuns:
    """Read every `suite run` run of `task` (or of all tasks) from the store at `tracking_uri`."""
    filters = [_search_filter(task, kind) for kind in KINDS]
    if not store_exists(tracking_uri):
        log.info("no MLflow store at %s yet: boards will hold only the published rows", tracking_uri)
        return CollectedRuns(_empty_frame(), _empty_frame(), tracking_uri)
    check_reachable(tracking_uri)

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with fast_failing_mlflow():
        try:
            client = MlflowClient(tracking_uri=tracking_uri)
            found = [run for filter_string in filters for run in _search_all_runs(client, filter_string)]
        except Exception as err:
            # MlflowException, OSError, or SQLAlchemy's errors for a database MLflow cannot use.
            if not isinstance(err, (MlflowException, OSError)) and not type(err).__module__.startswith("sqlalchemy"):
                raise
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TrackingError(
                f"cannot read runs from the MLflow store {redact(tracking_uri)}: {first_line}; check --tracking-uri"
            ) from err

    rows = [_run_row(run) for run in found]
    unlabelled = [row["run_id"] for row in rows if not row["task"]]
    if unlabelled:
        log.warning("%d run(s) have no %s tag and are left out: %s", len(unlabelled), schema.TAG_TASK, unlabelled)
    rows = [row for row in rows if row["task"]]
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS)) if rows else _empty_frame()
    # Sorted so that later aggregation sums in the same order every time: byte-identical boards.
    frame = frame.sort_values("run_id", kind="stable").reset_index(drop=True)
    finished = frame["status"] == FINISHED
    log.info(
        "read %d finished and %d unfinished run(s) from %s",
        int(finished.sum()),
        int((~finished).sum()),
        redact(tracking_uri),
    )
    return CollectedRuns(
        frame[finished].reset_index(drop=True), frame[~finished].reset_index(drop=True), tracking_uri
    )
