"""`suite doctor --gpu`: the GPU path end to end on one CUDA device, within 8 minutes, as JSON.

Steps, in order (each reports "ok", its seconds and what it measured; a failing step does not
stop the others):
  cuda_tests   the CUDA-only tests of tests/ (pytest -m cuda), from a checkout
  triton_lif   the Triton LIF kernel and the spikingjelly backend against the reference LIF on
               the device: every case of suite.models.lif_equivalence (fp32/fp16/bf16 spikes
               and gradients); which backend 'auto' picks there
  train_fp16   20 AdamW steps of spikformer-4-384 on a fixed CIFAR-shaped batch, fp16 autocast
               with loss scaling: finite loss, falling
  train_bf16   the same under bf16 autocast
  bench        `suite bench --compare spikingjelly --device cuda --mode both`: samples/s, peak
               CUDA memory and the ratios
  ray_run      `suite run` with 1 worker and --gpus-per-worker 1, one synthetic epoch, through
               Ray into a fresh MLflow store; the run must finish with its metrics logged
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

BUDGET_S = 8 * 60
TRAIN_MODEL = "spikformer-4-384"


def tests_dir() -> Path:
    """tests/ of the checkout the suite runs from; an installed suite has none (the wheel ships no
    tests), so there it is tests/ of the folder the doctor was started in."""
    from suite.ray_jobs_client import find_project_root

    return (find_project_root() or Path.cwd()) / "tests"


@dataclasses.dataclass(frozen=True)
class Context:
    work_dir: Path  # bench JSON, the MLflow store and Ray's results of this check
    device: str = "cuda"


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    what: str
    run: Callable[[Context], dict]  # returns details including "ok"
    command: Callable[[Context], list[str]] | None = None  # for steps run as a subprocess


def pytest_command(ctx: Context) -> list[str]:
    return [sys.executable, "-m", "pytest", str(tests_dir()), "-m", "cuda", "-q", "-p", "no:cacheprovider"]


def bench_command(ctx: Context) -> list[str]:
    return [
        sys.executable, "-m", "suite", "bench", "--compare", "spikingjelly", "--device", "cuda", "--mode", "both",
        "--steps", "5", "--warmup", "2", "--json", str(ctx.work_dir / "bench.json"),
    ]


def run_command(ctx: Context) -> list[str]:
    return [
        sys.executable, "-m", "suite", "run", "--task", "cifar10", "--data", "synthetic", "--synthetic-size", "512",
        "--epochs", "1", "--workers", "1", "--gpus-per-worker", "1", "--amp", "bf16",
        "--experiment", "doctor-gpu", "--tracking-uri", tracking_uri(ctx),
    ]


def tracking_uri(ctx: Context) -> str:
    from suite.tracking import sqlite_uri

    return sqlite_uri(ctx.work_dir / "mlflow.db")


def _subprocess(cmd: list[str], timeout_s: float, env: dict | None = None) -> dict:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s, env=env)
    return {"command": " ".join(cmd), "exit_code": proc.returncode, "output_tail": proc.stdout[-2000:]}


def cuda_tests(ctx: Context) -> dict:
    if not tests_dir().is_dir():
        return {"ok": False, "error": f"no tests folder at {tests_dir()}: run the doctor from a checkout"}
    result = _subprocess(pytest_command(ctx), timeout_s=180)
    summary = [line for line in result["output_tail"].splitlines() if " passed" in line or " failed" in line]
    return {**result, "summary": summary[-1] if summary else None, "ok": result["exit_code"] == 0}


def triton_lif(ctx: Context) -> dict:
    import torch

    from suite.models import lif_equivalence
    from suite.models.kernels.dispatch import AUTO_EXCLUDED, BACKENDS, BackendChoice

    details = {"auto_excluded": dict(AUTO_EXCLUDED)}
    details["auto_picks"] = BackendChoice("auto").name_on(torch.device(ctx.device))
    ok = True
    for name in ("fused_cuda", "spikingjelly"):
        if name not in BACKENDS:
            details[name] = {"error": f"backend {name!r} is not registered (is triton installed?)"}
            ok = False
            continue
        cases = lif_equivalence.check_backend(BACKENDS[name], ctx.device)
        details[name] = {"passed": sum(c["ok"] for c in cases), "cases": cases}
        ok = ok and all(c["ok"] for c in cases)
    return {**details, "ok": ok}


def training(precision: str) -> Callable[[Context], dict]:
    def check(ctx: Context) -> dict:
        from suite.doctor.training import training_check

        return training_check(TRAIN_MODEL, precision, ctx.device, steps=20)

    return check


def bench(ctx: Context) -> dict:
    result = _subprocess(bench_command(ctx), timeout_s=240)
    report_file = ctx.work_dir / "bench.json"
    if result["exit_code"] != 0 or not report_file.exists():
        return {**result, "ok": False}
    return {**result, **bench_summary(json.loads(report_file.read_text())), "ok": True}


def bench_summary(report: dict) -> dict:
    """samples/s and peak CUDA memory per mode and implementation, and the suite/peer ratios."""
    modes = {}
    for mode, entry in report["modes"].items():
        modes[mode] = {
            impl: {"samples_per_s": r["samples_per_s"], "peak_cuda_mem_mb": r.get("peak_cuda_mem_mb"),
                   "batch_size": r["batch_size"]}
            for impl, r in entry["results"].items()
        }
        modes[mode]["ratios"] = entry.get("ratios", {})
    return {"gpu": report["machine"].get("gpu"), "modes": modes}


def ray_run(ctx: Context) -> dict:
    import os

    env = {**os.environ, "SUITE_HOME": str(ctx.work_dir / "suite-home")}
    result = _subprocess(run_command(ctx), timeout_s=300, env=env)
    if result["exit_code"] != 0:
        return {**result, "ok": False}
    run = finished_run(tracking_uri(ctx), "doctor-gpu")
    on_gpu = (run.get("device") or "").startswith("cuda")  # the worker's own record of its device
    return {**result, **run, "ok": run["status"] == "FINISHED" and bool(run["metrics"]) and on_gpu}


def finished_run(uri: str, experiment: str) -> dict:
    """The latest run of `experiment` in the MLflow store at `uri`: status, metrics and the
    device its workers trained on."""
    import mlflow

    from suite import schema

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1) if found else []
    if not runs:
        return {"status": None, "metrics": {}, "error": f"no run of experiment {experiment!r} in {uri}"}
    run = runs[0]
    return {"run_id": run.info.run_id, "status": run.info.status, "metrics": dict(run.data.metrics),
            "device": run.data.tags.get(schema.TAG_DEVICE)}


STEPS = (
    Step("cuda_tests", "the CUDA-only tests (pytest -m cuda)", cuda_tests, pytest_command),
    Step("triton_lif", "Triton LIF and spikingjelly LIF vs the reference on the device: spikes, gradients, "
         "fp32/fp16/bf16, T 1/4/16", triton_lif),
    Step("train_fp16", f"20 steps of {TRAIN_MODEL} on a fixed CIFAR-shaped batch, fp16 + loss scaling: "
         "finite, falling loss", training("fp16")),
    Step("train_bf16", f"20 steps of {TRAIN_MODEL} on a fixed CIFAR-shaped batch, bf16: finite, falling loss",
         training("bf16")),
    Step("bench", "suite vs spikingjelly on the GPU: samples/s, peak CUDA memory, ratios", bench, bench_command),
    Step("ray_run", "1 worker, 1 GPU, one synthetic epoch through Ray into MLflow", ray_run, run_command),
)


def plan(ctx: Context, steps=STEPS) -> str:
    """A table of the steps: name and what it checks, with the command of a subprocess step on the
    line below."""
    from suite.table import format_table

    rows = []
    for step in steps:
        rows.append({"step": step.name, "what it checks": step.what})
        if step.command is not None:
            rows.append({"step": "", "what it checks": f"$ {' '.join(step.command(ctx))}"})
    return format_table(rows, ["step", "what it checks"])


def run_steps(ctx: Context, steps=STEPS) -> dict:
    """Every step in order, timed; an exception fails that step (with its traceback) only."""
    report = {"steps": {}, "budget_s": BUDGET_S}
    start = time.perf_counter()
    for step in steps:
        log.info("doctor: %s: %s", step.name, step.what)
        t0 = time.perf_counter()
        try:
            result = step.run(ctx)
        except Exception as err:  # a broken step is a finding to report, not a reason to stop
            result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        result["seconds"] = time.perf_counter() - t0
        report["steps"][step.name] = result
        log.info("doctor: %s %s in %.0f s", step.name, "ok" if result["ok"] else "FAILED", result["seconds"])
    report["total_s"] = time.perf_counter() - start
    report["within_budget"] = report["total_s"] <= BUDGET_S
    report["ok"] = all(r["ok"] for r in report["steps"].values()) and report["within_budget"]
    return report


def machine() -> dict:
    import platform

    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info
