"""`suite eval`: evaluate an existing checkpoint over a task's whole eval split, as one MLflow run."""

from __future__ import annotations

import argparse
import logging

from suite.cli import add_command
from suite.commands.setting_flags import add_setting_flags, overrides_from_args

log = logging.getLogger(__name__)

DESCRIPTION = """\
Evaluate a checkpoint on a task's whole eval split with Ray Train workers (counts all-reduced,
exactly as `suite run` evaluates every epoch) and log one MLflow run tagged suite.kind=eval with
the checkpoint's sha256, format and origin and the resolved model config. The leaderboards show
it as an evaluation row.

Checkpoints: a `suite run`'s state.pt (or --run ID: that run's best checkpoint and its config);
an official Spikformer checkpoint (timm layout: state_dict / state_dict_ema, `module.` prefixes,
an `args` namespace whose depth, dim, heads, T and patch size are checked against the model); or
a bare state_dict with either key naming. Files load with torch.load(weights_only=True), allowing
only argparse.Namespace besides tensors; anything else is refused unless --trust-checkpoint.

Settings: the task's recipe, then what the checkpoint records (a `suite run`'s config, an official
checkpoint's model and T), then the flags below.
"""

EPILOG = """\
examples:
  {prog} eval --run 0123abcd...                      (a suite run's best checkpoint, its own config)
  {prog} eval --task imagenet --checkpoint model_best.pth.tar --model spikformer-8-512 --data ~/datasets
  {prog} eval --task cifar10 --checkpoint state.pt --data synthetic --workers 2 --neurobench
"""

def register(subparsers) -> None:
    from suite.models.checkpoints import FORMATS

    p = add_command(
        subparsers, "eval", "evaluate a checkpoint (suite or official) into MLflow and the leaderboards",
        DESCRIPTION, EPILOG,
    )
    p.add_argument("--task", metavar="TASK", help="task name (default: the one the checkpoint records)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="checkpoint file to evaluate")
    source.add_argument("--run", metavar="MLFLOW_RUN_ID", help="evaluate this `suite run`'s best checkpoint with its config")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="auto", help="whose key names the weights carry (default: auto)")
    p.add_argument("--use-ema", action="store_true", help="take a timm checkpoint's state_dict_ema instead of its state_dict")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (can run code: trusted files only)")
    p.add_argument("--neurobench", action="store_true", help="also compute NeuroBench's metrics (needs the neurobench extra)")
    add_setting_flags(p, "eval")  # the settings an evaluation uses; the training ones do not apply
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from suite.engine.eval_driver import EvalRequest, plan_eval, start_eval
    from suite.engine.stop_signals import RunInterrupted

    request = EvalRequest(
        task=args.task, checkpoint=args.checkpoint, run_id=args.run, overrides=overrides_from_args(args),
        fmt=args.fmt, trust=args.trust_checkpoint, use_ema=args.use_ema, neurobench=args.neurobench,
    )
    plan = plan_eval(request)
    print(f"checkpoint {plan.origin}: {plan.format_tag}, sha256 {plan.checkpoint.sha256}")
    print(f"model {plan.settings.model}: {plan.model_config}", flush=True)
    try:
        outcome = start_eval(plan)
    except RunInterrupted as stop:
        where = f"MLflow run {stop.run_id} is {stop.run_status}" if stop.run_id else "before its MLflow run was created"
        log.warning("evaluation stopped by %s: %s; run the same command again to evaluate", stop.signal_name, where)
        return stop.exit_code
    print_summary(outcome)
    return 0


def print_summary(outcome) -> None:
    from suite import schema
    from suite.tracking import client, ui_command

    experiment_id = client(outcome.tracking_uri).get_run(outcome.run_id).info.experiment_id
    m = outcome.metrics
    nan = float("nan")
    lines = [
        f"evaluated {int(m.get(schema.M_EVAL_SAMPLES, 0))} samples in {outcome.seconds:.1f} s: top-1 "
        f"{m.get(schema.M_TOP1, nan):.2f}%, top-5 {m.get(schema.M_TOP5, nan):.2f}%, loss {m.get(schema.M_EVAL_LOSS, nan):.4f}",
        f"SNN: {m.get(schema.M_SOPS, nan):.4g} G SOPs/sample, {m.get(schema.M_ENERGY, nan):.4g} mJ/sample, "
        f"mean firing rate {m.get(schema.M_FIRING_RATE, nan):.4f}, {m.get(schema.M_PARAMS, nan):.3f} M params",
    ]
    if schema.M_NB_EFFECTIVE_ACS in m:
        lines.append(
            f"NeuroBench: {m[schema.M_NB_EFFECTIVE_ACS] / 1e9:.4g} G effective ACs/sample, "
            f"{m[schema.M_NB_EFFECTIVE_MACS] / 1e9:.4g} G effective MACs, {m[schema.M_NB_DENSE] / 1e9:.4g} G dense, "
            f"activation sparsity {m[schema.M_NB_ACTIVATION_SPARSITY]:.4f}, connection sparsity "
            f"{m[schema.M_NB_CONNECTION_SPARSITY]:.4f}, footprint {m[schema.M_NB_FOOTPRINT] / 2**20:.2f} MiB"
        )
    lines += [
        f"MLflow run {outcome.run_id} (experiment {outcome.experiment!r}) in {outcome.tracking_uri}",
        f"browse: {ui_command(outcome.tracking_uri, experiment_id)}",
    ]
    print("\n".join(lines), flush=True)
