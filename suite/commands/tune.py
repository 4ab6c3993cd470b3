"""`suite tune`: a hyperparameter sweep of one task and model with Ray Tune, tracked in MLflow."""

from __future__ import annotations

import argparse
import logging

from suite.cli import add_command, program_name
from suite.commands.setting_flags import add_setting_flags, overrides_from_args

log = logging.getLogger(__name__)

DESCRIPTION = """\
Sweep hyperparameters of `suite run` with Ray Tune: every trial is a Ray Train run of the run
engine, ASHA stops weak trials early, and MLflow gets one parent run per sweep with one nested run
per trial. The best trial's config is logged on the parent and printed as a `suite run` command.

Search space: --param NAME=DIST:ARGS (repeatable), else the task's `extra.search_space`, else the
modality's default. Distributions: uniform:LOW:HIGH, loguniform:LOW:HIGH, quniform:LOW:HIGH:STEP,
randint:LOW:HIGH (inclusive), choice:A,B,..., grid:A,B,... (every value, each sample).
"""

EPILOG = """\
examples:
  {prog} tune --task cifar10 --model spikformer-2-64 --data synthetic --epochs 4 --amp off \\
      --samples 8 --param lr=loguniform:1e-4:1e-2 --param time_steps=choice:2,4
  {prog} tune --resume sweep-0123abcd...   (continue an interrupted sweep)
  {prog} submit --address http://HEAD:8265 --tracking-uri http://MLFLOW:5000 -- tune --task ...

stopping: Ctrl-C, `kill PID` (SIGTERM) and `suite jobs stop` stop a sweep gracefully: Tune saves it,
its runs end KILLED and --resume continues it; the exit status is 130 (Ctrl-C) or 143 (SIGTERM).
"""

def register(subparsers) -> None:
    p = add_command(
        subparsers, "tune", "hyperparameter sweep (Ray Tune + ASHA, MLflow parent/nested runs)", DESCRIPTION, EPILOG
    )
    p.add_argument("--task", metavar="TASK", help="task name; required unless --resume")
    p.add_argument("--samples", type=int, default=4, metavar="N", help="trials to sample (default 4; x the grid size)")
    p.add_argument("--scheduler", choices=("asha", "fifo"), default="asha", help="asha stops weak trials early (default)")
    p.add_argument("--search", choices=("random", "optuna"), default="random", help="how trials are sampled")
    p.add_argument("--param", action="append", default=[], metavar="NAME=DIST:ARGS", help="one search dimension")
    p.add_argument("--max-concurrent", type=int, metavar="K", help="trials at once (default: what the cluster fits)")
    p.add_argument("--workers-per-trial", metavar="N", help="Ray Train workers of each trial (default 1)")
    p.add_argument("--grace-period", type=int, default=1, metavar="EPOCHS", help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--resume", metavar="SWEEP", help="continue the interrupted sweep SWEEP (sweep-<run id>)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML settings overriding the recipe (flags override it)")
    add_setting_flags(p, "tune")  # every trial's settings but the sampled ones; not --workers (--workers-per-trial)
    p.set_defaults(func=run)


def base_overrides(args: argparse.Namespace) -> dict:
    """The `suite run` settings every trial shares, as given on the command line (None: unset)."""
    return {**overrides_from_args(args), "workers": args.workers_per_trial}


def run(args: argparse.Namespace) -> int:
    from suite.commands.run import stopped_line
    from suite.engine.stop_signals import RunInterrupted

    try:
        return _run(args)
    except RunInterrupted as stop:  # stopped before Tune's own graceful stop could take over
        log.warning(stopped_line(stop, resume=f"{program_name()} tune --resume sweep-{stop.run_id}"))
        return stop.exit_code


def _run(args: argparse.Namespace) -> int:
    import signal

    from suite.errors import UsageError
    from suite.tune.report import summary

    if args.resume:
        given = sorted(k for k, v in base_overrides(args).items() if v is not None and k not in ("tracking_uri", "address"))
        if args.task or args.param or args.config or given:
            raise UsageError("--resume continues a sweep with its stored settings; give only --tracking-uri/--address with it")
        from suite.engine.ray_session import resolve_ray_address
        from suite.tracking import resolve_tracking
        from suite.tune.sweep import resume_sweep

        outcome = resume_sweep(args.resume, resolve_tracking(args.tracking_uri), resolve_ray_address(args.address))
        param_names = list(outcome.trials[0]["params"]) if outcome.trials else []
    else:
        if not args.task:
            raise UsageError(f"--task is required (or --resume SWEEP); list tasks with `{program_name()} tasks`")
        spec = build_spec(args)
        outcome = _start(spec)
        param_names = list(spec.space)
    print(summary(outcome, param_names), flush=True)
    # 128 + the signal number, as `suite run` (130: Ctrl-C, 143: SIGTERM)
    return 128 + (outcome.stop_signal or signal.SIGINT) if outcome.interrupted else 0


def build_spec(args: argparse.Namespace):
    from suite.engine.config import resolve_settings
    from suite.task_registry import get_task
    from suite.tune.space import resolve_space, space_to_text
    from suite.tune.sweep import SweepSpec

    task = get_task(args.task)
    space, origin = resolve_space(task, args.param)
    overrides = base_overrides(args)
    run_flags = {k: v for k, v in overrides.items() if v is not None and k != "address"}
    if overrides["cpus_per_worker"] is None:
        overrides["cpus_per_worker"] = 1  # one CPU per trial worker, so trials run side by side
    settings = resolve_settings(task.name, overrides, args.config)
    if args.config:
        run_flags["config"] = args.config
    return SweepSpec(
        task=task.name, base_settings=settings.to_dict(), space=space_to_text(space), space_origin=origin,
        samples=args.samples, scheduler=args.scheduler, search=args.search, max_concurrent=args.max_concurrent,
        grace_period=args.grace_period, run_flags=run_flags,
    )


def _start(spec):
    from suite.tune.sweep import start_sweep

    print(f"sweep of {spec.task} / {spec.base_settings['model']}: {spec.total_trials} trial(s) over "
          f"{', '.join(f'{k}={v}' for k, v in spec.space.items())} ({spec.space_origin}), "
          f"{spec.scheduler} scheduler, {spec.search} search", flush=True)
    return start_sweep(spec)
