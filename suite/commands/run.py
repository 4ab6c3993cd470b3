"""`suite run`: train one model on one task with Ray Train, tracked as one MLflow run."""

from __future__ import annotations

import argparse
import logging

from suite.cli import program_name

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

# flag -> RunSettings field; every value is taken as text and checked by suite.engine.config so
# that a bad one gives a one-line error naming the flag.
VALUE_FLAGS = {
    "--protocol": ("protocol", "PROTOCOL", "evaluation protocol (default: the task's first)"),
    "--model": ("model", "NAME", "model name, e.g. spikformer-4-384 (default: the recipe's)"),
    "--epochs": ("epochs", "N", "training epochs, cool-down included (a short run scales the recipe's schedule: README)"),
    "--batch-size": ("batch_size", "N", "global batch size, split evenly across workers"),
    "--lr": ("lr", "LR", "peak learning rate"),
    "--weight-decay": ("weight_decay", "WD", "weight decay (not applied to biases/norms)"),
    "--warmup-epochs": ("warmup_epochs", "N", "linear warm-up epochs of timm's cosine schedule"),
    "--cooldown-epochs": ("cooldown_epochs", "N", "last epochs held at the minimum learning rate"),
    "--mixup-off-epoch": ("mixup_off_epoch", "N", "turn mixup/cutmix off from this epoch (0: never)"),
    "--label-smoothing": ("label_smoothing", "EPS", "label smoothing of the cross-entropy"),
    "--mixup": ("mixup", "ALPHA", "mixup alpha (0 disables)"),
    "--cutmix": ("cutmix", "ALPHA", "cutmix alpha (0 disables)"),
    "--time-steps": ("time_steps", "T", "simulation time steps T"),
    "--preprocess": ("preprocess", "NAME", "the task's data preprocessing, e.g. ntu60: suite or ctrgcn (default: the recipe's)"),
    "--workers": ("workers", "N", "Ray Train workers (default 1)"),
    "--cpus-per-worker": ("cpus_per_worker", "N", "CPUs (and torch threads) per worker; 0: share this machine's CPUs"),
    "--gpus-per-worker": ("gpus_per_worker", "G", "GPUs per worker (0: CPU training with gloo; >0: CUDA with nccl)"),
    "--loader-workers": ("loader_workers", "N", "DataLoader processes per worker (default 0)"),
    "--amp": ("amp", "off|bf16|fp16", "mixed precision: bf16 (CPU or CUDA), fp16 (CUDA only)"),
    "--seed": ("seed", "N", "random seed (default 0)"),
    "--max-failures": ("max_failures", "K", "restarts of a failed worker group from its last checkpoint (default 1; -1: unlimited)"),
    "--synthetic-size": ("synthetic_size", "N", "samples per split with --data synthetic (default: the task's)"),
    "--experiment": ("experiment", "NAME", "MLflow experiment (default spikformer-suite)"),
    "--tracking-uri": ("tracking_uri", "URI", "MLflow store: sqlite:///PATH.db or http(s)://HOST:PORT (default: "
                       "$MLFLOW_TRACKING_URI, else sqlite in $SUITE_HOME)"),
    "--address": ("address", "ADDRESS", "join this Ray cluster (default: $RAY_ADDRESS, else an embedded local Ray "
                  "on 127.0.0.1)"),
    "--storage-path": ("storage_path", "PATH|URI", "Ray Train checkpoints (and Tune state): a shared folder, "
                       "s3://BUCKET/PATH or gs://BUCKET/PATH (default: $SUITE_HOME/ray_results)"),
}
# Flags that may accompany --resume: they say where to run, not what.
RESUME_FLAGS = ("tracking_uri", "address")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="train a model on a task (Ray Train + MLflow)",
        description=DESCRIPTION.format(prog=program_name()), epilog=EPILOG.format(prog=program_name()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", metavar="TASK", help="task name (see the `tasks` command); required unless --resume")
    p.add_argument(
        "--data", metavar="synthetic|PATH",
        help="'synthetic' for generated data of the task's shapes, or the data root holding the task's folder "
        "(default: --data-root, else $SUITE_DATA_ROOT, else ~/.cache/spikformer-suite/data)",
    )
    p.add_argument("--data-root", metavar="PATH", help="the data root (same as --data PATH)")
    for flag, (dest, metavar, text) in VALUE_FLAGS.items():
        p.add_argument(flag, dest=dest, metavar=metavar, help=text)
    p.add_argument("--skip-corrupt", action="store_true", default=None, help="skip unreadable samples instead of failing")
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if the task supports it")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings overriding the recipe (flags override it)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue the MLflow run RUN_ID (its driver died) from its last checkpoint")
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict:
    from suite.errors import UsageError

    # getattr with a default: `suite tune` reuses this with a subset of the flags.
    values = {dest: getattr(args, dest, None) for dest, _, _ in VALUE_FLAGS.values()}
    values["skip_corrupt"] = args.skip_corrupt
    values["download"] = args.download
    if args.data is not None and args.data_root is not None:
        raise UsageError("give either --data or --data-root, not both")
    values["data"] = args.data if args.data is not None else args.data_root
    return values


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
            named = ", ".join(["--task"] * bool(args.task) + ["--config"] * bool(args.config) + [f"--{k.replace('_', '-')}" for k in given])
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
