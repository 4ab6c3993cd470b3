"""`suite doctor --gpu`: run the GPU path end to end on this machine's CUDA device and write a
JSON report (steps in suite.doctor.gpu); `--dry-run` lists the steps without running them."""

from __future__ import annotations

import argparse

NO_CUDA_LINE = "suite doctor --gpu: no CUDA device here (torch.cuda.is_available() is False); nothing to check"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check this machine's GPU path end to end (--gpu), with a JSON report",
        description="--gpu runs, on one CUDA device within about 8 minutes: the CUDA-only tests, the "
        "Triton and spikingjelly LIF against the reference LIF on the device, 20 fp16 and 20 bf16 "
        "training steps of spikformer-4-384, `suite bench --compare spikingjelly --device cuda`, and a "
        "1-GPU `suite run` of one synthetic epoch through Ray into MLflow. Without CUDA it says so in "
        "one line and exits 0.",
    )
    p.add_argument("--gpu", action="store_true", help="check the GPU path (the one check so far)")
    p.add_argument("--dry-run", action="store_true", help="list the steps and their commands; run nothing")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="where to write the report (default: doctor-gpu.json in the run's work folder)")
    p.add_argument("--work-dir", metavar="DIR", default=None,
                   help="folder for the bench report, MLflow store and Ray results of the check "
                   "(default: a new folder under $SUITE_HOME/doctor)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from suite.errors import UsageError

    if not args.gpu:
        raise UsageError("choose what to check: --gpu (the only check so far)")
    if args.json and not Path(args.json).parent.exists():
        raise UsageError(f"--json {args.json}: folder {Path(args.json).parent} does not exist")

    from suite.doctor import gpu
    from suite.tracking import work_dir as suite_home

    work_dir = Path(args.work_dir) if args.work_dir else suite_home() / "doctor" / time.strftime("gpu-%Y%m%d-%H%M%S")
    ctx = gpu.Context(work_dir=work_dir)
    if args.dry_run:
        print(f"suite doctor --gpu would run, in {work_dir}:")
        print(gpu.plan(ctx))
        return 0

    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA_LINE)
        return 0
    work_dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": gpu.machine(), **gpu.run_steps(ctx)}
    target = Path(args.json) if args.json else work_dir / "doctor-gpu.json"
    target.write_text(json.dumps(report, indent=2))
    from suite.table import format_table

    rows = [{"step": name, "result": step["ok"], "seconds": step["seconds"]} for name, step in report["steps"].items()]
    rows.append({"step": "total", "result": report["ok"], "seconds": report["total_s"]})
    print(format_table(rows, ["step", "result", "seconds"],
                       formats={"result": lambda ok: "ok" if ok else "FAILED", "seconds": "{:.0f}".format}))
    print(f"budget {report['budget_s']} s; report: {target}")
    return 0 if report["ok"] else 1
