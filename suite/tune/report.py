"""What `suite tune` prints at the end: the trials table and the best config as a `suite run` command."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping

from suite import schema
from suite.run_settings import SETTINGS, flag
from suite.tune import runs


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def run_command(task: str, run_flags: Mapping[str, Any], best_params: Mapping[str, Any]) -> str:
    """`suite run ...` (as the user started the CLI) with the flags the sweep was given and the best
    trial's values."""
    from suite.cli import program_name

    args = [*program_name().split(), "run", "--task", task]
    for name, value in {**run_flags, **best_params}.items():
        if value is None or name == "address":  # where to run is the reader's choice
            continue
        if name == "config":
            args += ["--config", str(value)]
        elif isinstance(value, bool):  # an on/off setting: --x / --no-x
            args += [flag(name) if value else "--no-" + flag(name)[2:]]
        elif name in SETTINGS and SETTINGS[name].has_flag:
            args += [flag(name), _text(value)]
    return shlex.join(args)


def trial_rows(results, trial_runs: Mapping[str, Any], param_names: list[str]) -> list[dict[str, Any]]:
    """One row per trial: id, MLflow run and status, sampled params, epochs and best top-1."""
    rows = []
    for result in results:
        trial_id = Path(result.path).name.removeprefix("trial_") if result.path else ""
        run = trial_runs.get(trial_id)
        metrics = result.metrics or {}
        rows.append(
            {
                "trial_id": trial_id,
                "run_id": run.info.run_id if run else None,
                "status": run.info.status if run else ("ERROR" if result.error else "-"),
                "early_stopped": bool(run and run.data.tags.get(runs.TAG_EARLY_STOPPED) == "true"),
                "params": {name: result.config.get(name) for name in param_names},
                "epochs": int(metrics.get("training_iteration", 0)),
                "best_top1": metrics.get(schema.M_BEST_TOP1),
            }
        )
    return sorted(rows, key=lambda r: -(r["best_top1"] if r["best_top1"] is not None else -1.0))


def format_trials(rows: list[dict[str, Any]], param_names: list[str]) -> str:
    from suite.table import format_table

    table = [
        {
            "trial": r["trial_id"],
            "status": r["status"] + (" (early stop)" if r["early_stopped"] else ""),
            **{name: r["params"].get(name) for name in param_names},
            "epochs": r["epochs"],
            "best_top1": r["best_top1"],
            "mlflow run": r["run_id"],
        }
        for r in rows
    ]
    return format_table(table, ["trial", "status", *param_names, "epochs", "best_top1", "mlflow run"])


def summary(outcome, param_names: list[str]) -> str:
    from suite.cli import program_name
    from suite.table import cell_text
    from suite.tracking import client, ui_command

    lines = [format_trials(outcome.trials, param_names), ""]
    if outcome.interrupted:
        lines.append(
            f"sweep {outcome.sweep_name} was interrupted; continue it with: {program_name()} tune --resume "
            f"{outcome.sweep_name}" + (f" --tracking-uri {outcome.tracking_uri}" if outcome.tracking_uri else "")
        )
    if outcome.best_command:
        best = ", ".join(f"{k}={cell_text(v)}" for k, v in outcome.best_params.items())
        top1 = outcome.best_metrics.get(schema.M_BEST_TOP1)
        lines.append(f"best trial {outcome.best_trial_id}: {best} (best top-1 {cell_text(top1)}%)")
        lines.append("train it with:")
        lines.append(f"  {outcome.best_command}")
    experiment_id = client(outcome.tracking_uri).get_run(outcome.parent_run_id).info.experiment_id
    lines.append(f"MLflow parent run {outcome.parent_run_id} in {outcome.tracking_uri}; browse: "
                 f"{ui_command(outcome.tracking_uri, experiment_id)}")
    return "\n".join(lines)
