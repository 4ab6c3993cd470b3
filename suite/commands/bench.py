"""`suite bench`: samples/s, peak memory and achieved GFLOP/s of the backbone, optionally beside
spikingjelly 2.0's own Spikformer run with the same shapes, batch, threads and input."""

from __future__ import annotations

import argparse

from suite.bench.spec import DEVICES


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark training/inference speed and memory (optionally against spikingjelly)",
        description="Times repeated steps after a warm-up, each configuration in its own process, "
        "and prints the median samples/s, peak memory (RSS above the post-import baseline), "
        "achieved GFLOP/s and its share of this machine's matmul rate measured in the same run.",
    )
    p.add_argument("--model", default="spikformer-4-384", help="model name (default: %(default)s)")
    p.add_argument("--task", default="cifar10", help="task whose input shapes and classes to use (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="batch size (default: 32 for train, 64 for infer)")
    p.add_argument("--amp", choices=("off", "bf16"), default="off", help="autocast on the device (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where both implementations run; cuda times steps with CUDA events (default: %(default)s)")
    p.add_argument("--mode", choices=("train", "infer", "both"), default="train", help="(default: %(default)s)")
    p.add_argument("--compare", choices=("spikingjelly",), action="append", default=[],
                   help="also run this peer implementation and print the ratios")
    p.add_argument("--steps", type=_positive, default=5, help="timed steps; the median is reported (default: %(default)s)")
    p.add_argument("--warmup", type=_non_negative, default=2, help="untimed steps first (default: %(default)s)")
    p.add_argument("--rounds", type=_positive, default=1,
                   help="run each implementation this many times, alternating, and pool the steps "
                   "(evens out a busy machine's varying load; default: %(default)s)")
    p.add_argument("--threads", type=_non_negative, default=0,
                   help="torch threads for every process (default: torch's default, %(default)s = auto)")
    p.add_argument("--time-steps", type=_positive, default=None, help="T (default: the task recipe's)")
    p.add_argument("--no-fold-bn", action="store_true", help="suite inference: keep BatchNorm layers unfolded")
    p.add_argument("--no-channels-last", action="store_true", help="suite: keep NCHW convolutions")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the full report as JSON to FILE")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from suite.bench.runner import format_report, run_bench
    from suite.errors import UsageError
    from suite.models.registry import spikformer_config  # the benchmark measures Spikformer's LIF paths
    from suite.task_registry import get_task

    from suite.bench.timing import require_device

    try:
        require_device(args.device)
    except ValueError as err:
        raise UsageError(f"--device {args.device}: {err}") from err
    task = get_task(args.task)  # unknown names fail here, before any process starts
    spikformer_config(args.model, **task.model_kwargs(args.time_steps))
    if args.json:
        target = Path(args.json)
        if not target.parent.exists():
            raise UsageError(f"--json {args.json}: folder {target.parent} does not exist")
    if "spikingjelly" in args.compare:
        try:
            import spikingjelly.activation_based.model.spikformer  # noqa: F401
        except ImportError as err:
            raise UsageError(f"--compare spikingjelly needs spikingjelly >= 2.0 installed ({err})") from err

    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    report = run_bench(
        model=args.model, task=args.task, modes=modes, amp=args.amp, batch_size=args.batch_size,
        compare=tuple(dict.fromkeys(args.compare)), steps=args.steps, warmup=args.warmup, threads=args.threads,
        time_steps=args.time_steps, fold_bn=not args.no_fold_bn, channels_last=not args.no_channels_last,
        rounds=args.rounds, device=args.device,
    )
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0
