"""MLflow runs of a sweep: one parent run, one nested run per trial, statuses that always end.

A trial's run is found again by its tags (parent run id + Tune trial id), so a trial that Tune
restarts (`--resume`, a retried failure) keeps logging into the run it started; a trial never
gets two runs. Trials stopped by ASHA are FINISHED runs tagged `suite.early_stopped=true`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from suite import schema, tracking

log = logging.getLogger(__name__)

TAG_PARENT = "mlflow.parentRunId"  # MLflow's own tag: the UI nests the run under its parent
TAG_SWEEP = "suite.sweep"
TAG_TRIAL_ID = "suite.trial_id"
TAG_EARLY_STOPPED = "suite.early_stopped"
TAG_BEST_TRIAL = "suite.best_trial_id"
TAG_BEST_RUN = "suite.best_run_id"
TAG_BEST_COMMAND = "suite.best_command"
SWEEP_ARTIFACT = "sweep.yaml"
BEST_CONFIG_ARTIFACT = "best_config.yaml"
BEST_PARAM_PREFIX = "best."


def sweep_name(parent_run_id: str) -> str:
    return f"sweep-{parent_run_id}"


def parent_run_id_of(sweep: str) -> str:
    """`--resume` takes the sweep name (`sweep-<run id>`) or the parent run id itself."""
    return sweep[len("sweep-") :] if sweep.startswith("sweep-") else sweep


def create_parent_run(tracking_uri: str, experiment: str, *, run_name: str, tags: Mapping[str, str]) -> str:
    return tracking.create_run(tracking_uri, experiment, run_name=run_name, tags={**tags, schema.TAG_KIND: "sweep"})


def find_trial_run(tracking_uri: str, parent_run_id: str, trial_id: str) -> str | None:
    runs = _trial_runs(tracking_uri, parent_run_id, f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'")
    if len(runs) > 1:
        log.warning("trial %s has %d MLflow runs; using the oldest", trial_id, len(runs))
    return runs[0].info.run_id if runs else None


def trial_runs(tracking_uri: str, parent_run_id: str) -> dict[str, Any]:
    """{trial id: MLflow run} of every trial of the sweep."""
    return {run.data.tags[TAG_TRIAL_ID]: run for run in _trial_runs(tracking_uri, parent_run_id)}


def _trial_runs(tracking_uri: str, parent_run_id: str, extra_filter: str = "") -> list:
    client = tracking.client(tracking_uri)
    parent = client.get_run(parent_run_id)
    query = f"tags.`{TAG_PARENT}` = '{parent_run_id}'" + (f" and {extra_filter}" if extra_filter else "")
    runs = client.search_runs([parent.info.experiment_id], filter_string=query, max_results=10_000)
    return sorted(runs, key=lambda r: r.info.start_time or 0)


def get_or_create_trial_run(
    tracking_uri: str,
    experiment: str,
    *,
    parent_run_id: str,
    sweep: str,
    trial_id: str,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
) -> str:
    """The trial's run: the existing one (reopened) when Tune restarts the trial, else a new one."""
    existing = find_trial_run(tracking_uri, parent_run_id, trial_id)
    if existing is not None:
        tracking.reopen_run(tracking_uri, existing)
        return existing
    trial_tags = {**tags, schema.TAG_KIND: "trial", TAG_PARENT: parent_run_id, TAG_SWEEP: sweep, TAG_TRIAL_ID: trial_id}
    return tracking.create_run(tracking_uri, experiment, run_name=run_name, tags=trial_tags, params=params)


def run_status(tracking_uri: str, run_id: str) -> str:
    return tracking.client(tracking_uri).get_run(run_id).info.status


def epochs_logged(tracking_uri: str, run_id: str) -> int:
    """How many epochs the run holds metrics for: its highest logged epoch + 1."""
    history = tracking.client(tracking_uri).get_metric_history(run_id, schema.M_EPOCH)
    return int(max((m.value for m in history), default=-1)) + 1


def end_trial_run(tracking_uri: str, run_id: str, status: str, *, early_stopped: bool = False, error: str = "") -> None:
    client = tracking.client(tracking_uri)
    if early_stopped:
        client.set_tag(run_id, TAG_EARLY_STOPPED, "true")
    if error:
        client.set_tag(run_id, tracking.TAG_ERROR, error.strip().splitlines()[0][:5000] if error.strip() else "")
    tracking.mark_status(tracking_uri, run_id, status)


def log_best(
    tracking_uri: str,
    parent_run_id: str,
    *,
    trial_id: str,
    trial_run_id: str | None,
    params: Mapping[str, Any],
    settings_yaml: str,
    metrics: Mapping[str, Any],
    command: str,
) -> None:
    """The best trial on the parent: its sampled params (`best.<name>`), metrics, config and command."""
    client = tracking.client(tracking_uri)
    tracking.log_params(tracking_uri, parent_run_id, {BEST_PARAM_PREFIX + k: v for k, v in params.items()})
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numeric:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(parent_run_id, metrics=[Metric(k, v, now, 0) for k, v in sorted(numeric.items())])
    client.set_tag(parent_run_id, TAG_BEST_TRIAL, trial_id)
    if trial_run_id:
        client.set_tag(parent_run_id, TAG_BEST_RUN, trial_run_id)
    client.set_tag(parent_run_id, TAG_BEST_COMMAND, command[:5000])
    client.log_text(parent_run_id, settings_yaml, BEST_CONFIG_ARTIFACT)
