"""`suite run`: train one model on one task with Ray Train, tracked as one MLflow run."""

from __future__ import annotations

import argparse
import logging

from suite.cli import add_command, program_name
from suite.commands.setting_flags import add_setting_flags, overrides_from_args
from suite.run_settings import flag

log = logging.getLogger(__name__)

DESCRIPTION = """\
Train a Spikformer on a task with Ray Train (V2) and track it as one MLflow run.

Every default comes from the task's paper recipe (`{prog} tasks`); a --config YAML file
(keys as in the run's config.yaml artifact) overrides it, and flags override both. Numeric flags
are checked here and a bad value is named in a one-line error.

Where things go: $SUITE_HOME (default ~/.cache/spikformer-suite) holds the MLflow store
mlflow.db, its artifacts/ and Ray's checkpoints ray_results/. Browse with
  mlflow ui --backend-store-uri sqlite:///$SUITE_HOME/mlflow.db
As every MLflow and Ray tool: --tracking-uri, else $MLFLOW_TRACKING_URI, else that store; --address,
else $RAY_ADDRESS, else an embedded Ray. Which one was used, and why, is logged and in the run's params.
"""

EPILOG = """\
examples:
  {prog} run --task cifar10 --model spikformer-2-64 --data synthetic --epochs 2 --workers 2
  {prog} run --task cifar10 --data ~/datasets --download
  {prog} run --resume 0123abcd...   (continue a run whose driver died or was stopped)

stopping: Ctrl-C, `kill PID` (SIGTERM) and `suite jobs stop` end the MLflow run KILLED and keep its
checkpoints for --resume; the exit status is 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).

cluster: --address HOST:PORT joins a Ray cluster; with Ray's token auth export RAY_AUTH_MODE=token
and RAY_AUTH_TOKEN first. --storage-path s3://BUCKET/PATH keeps checkpoints where every node (and a
later --resume) finds them, with no shared file system. A worker that dies is restarted from the last epoch's checkpoint up to
--max-failures times. Set SUITE_TEST_CRASH (see suite/engine/crash_injection.py) only to test that.
"""

# Flags that may accompany --resume: they say where to run, not what.
RESUME_FLAGS = ("tracking_uri", "address")


def register(subparsers) -> None:
    p = add_command(subparsers, "run", "train a model on a task (Ray Train + MLflow)", DESCRIPTION, EPILOG)
    p.add_argument("--task", metavar="TASK", help="task name (see the `tasks` command); required unless --resume")
    add_setting_flags(p, "run")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings overriding the recipe (flags override it)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue the MLflow run RUN_ID (its driver died) from its last checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from suite.engine.stop_signals import RunInterrupted

    try:
        return _run(args)
    except RunInterrupted as stop:
        log.warning(stopped_line(stop))
        return stop.exit_code


def stopped_line(stop, resume: str | None = None) -> str:
    """The last line of a run stopped by Ctrl-C or SIGTERM: what became of it, how to go on."""
    from suite.tracking import default_tracking_uri

    if stop.run_id is None:
        return f"stopped by {stop.signal_name} before the MLflow run was created"
    if stop.run_status == "FINISHED":
        return f"stopped by {stop.signal_name} after training ended: MLflow run {stop.run_id} is FINISHED"
    resume = resume or f"{program_name()} run --resume {stop.run_id}"
    if stop.tracking_uri and stop.tracking_uri != default_tracking_uri():
        resume += f" --tracking-uri {stop.tracking_uri}"
    return f"stopped by {stop.signal_name}: MLflow run {stop.run_id} is {stop.run_status}; continue it with: {resume}"


def _run(args: argparse.Namespace) -> int:
    from suite.errors import UsageError

    overrides = overrides_from_args(args)
    if args.resume:
        given = sorted(k for k, v in overrides.items() if v is not None and k not in RESUME_FLAGS)
        if args.task or args.config or given:
            named = ", ".join(["--task"] * bool(args.task) + ["--config"] * bool(args.config) + [flag(k) for k in given])
            raise UsageError(f"--resume continues a run with its stored config; drop {named}")
        return _resume(args.resume, overrides)
    if not args.task:
        raise UsageError(f"--task is required (or --resume RUN_ID); list tasks with `{program_name()} tasks`")
    return _start(args.task, overrides, args.config)


def _start(task: str, overrides: dict, config_file: str | None) -> int:
    from suite.engine.config import resolve_settings
    from suite.engine.driver import start_run

    settings = resolve_settings(task, overrides, config_file)
    print("resolved config:")
    print("  " + settings.to_yaml().rstrip().replace("\n", "\n  "), flush=True)
    outcome = start_run(settings)
    print_summary(outcome)
    return 0


def _resume(run_id: str, overrides: dict) -> int:
    from suite.engine.driver import resume_run
    from suite.engine.ray_session import resolve_ray_address
    from suite.tracking import resolve_tracking

    outcome = resume_run(run_id, resolve_tracking(overrides.get("tracking_uri")), resolve_ray_address(overrides.get("address")))
    print_summary(outcome)
    return 0


def print_summary(outcome) -> None:
    from suite import schema
    from suite.tracking import client, ui_command

    experiment_id = client(outcome.tracking_uri).get_run(outcome.run_id).info.experiment_id
    m = outcome.metrics
    lines = [
        f"finished in {outcome.seconds:.1f} s: best top-1 {m.get(schema.M_BEST_TOP1, float('nan')):.2f}% "
        f"(last epoch top-1 {m.get(schema.M_TOP1, float('nan')):.2f}%, top-5 {m.get(schema.M_TOP5, float('nan')):.2f}%)",
        f"SNN: {m.get(schema.M_SOPS, float('nan')):.4g} G SOPs/sample, {m.get(schema.M_ENERGY, float('nan')):.4g} mJ/sample, "
        f"mean firing rate {m.get(schema.M_FIRING_RATE, float('nan')):.4f}, {m.get(schema.M_PARAMS, float('nan')):.3f} M params, "
        f"{m.get(schema.M_SAMPLES_PER_S, float('nan')):.1f} train samples/s",
        f"MLflow run {outcome.run_id} (experiment {outcome.experiment!r}) in {outcome.tracking_uri}",
        f"browse: {ui_command(outcome.tracking_uri, experiment_id)}",
        f"checkpoints: {outcome.ray_run_dir}",
    ]
    print("\n".join(lines), flush=True)
