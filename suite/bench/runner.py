"""Run every (mode, implementation) configuration in its own worker process and compare them."""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import sys

import torch

from suite.bench import rates
from suite.bench.spec import BenchSpec
from suite.errors import SuiteError
from suite.table import format_table

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"train": 32, "infer": 64}


def run_worker(spec: BenchSpec, timeout_s: float | None = None) -> dict:
    """Run one configuration in a fresh interpreter; returns its result dict."""
    env = dict(os.environ)
    if spec.threads:  # OpenMP pools sized like torch's, for both implementations alike
        env["OMP_NUM_THREADS"] = str(spec.threads)
    cmd = [sys.executable, "-m", "suite.bench.worker", spec.to_json()]
    log.info("benchmarking %s %s (batch %d, amp %s)", spec.impl, spec.mode, spec.batch_size, spec.amp)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise SuiteError(
            f"benchmark worker {spec.impl}/{spec.mode} did not finish within {timeout_s:.0f} s; "
            "lower --steps or --batch-size"
        ) from err
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "error" in result or not result:
        why = result.get("error") or f"exit code {proc.returncode} and no result (its stderr is above)"
        raise SuiteError(f"benchmark worker {spec.impl}/{spec.mode} failed: {why}")
    return result


def machine_info(threads: int, device: str = "cpu") -> dict:
    return {
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def add_rates(result: dict, flops: float, matmul_gflops: float) -> None:
    result["flops_per_sample"] = flops
    result["achieved_gflops"] = flops * result["samples_per_s"] / 1e9
    result["matmul_gflops"] = matmul_gflops
    result["share_of_matmul"] = result["achieved_gflops"] / matmul_gflops


def merge_rounds(runs: list[dict]) -> dict:
    """One result from several worker runs of a configuration: the median over all their timed
    steps, and the highest peak memory."""
    merged = dict(runs[0])
    if len(runs) > 1:
        merged["step_s_all"] = [t for run in runs for t in run["step_s_all"]]
        merged["step_s"] = statistics.median(merged["step_s_all"])
        merged["samples_per_s"] = merged["batch_size"] / merged["step_s"]
        for key in ("peak_mem_mb", "peak_rss_mb", "peak_host_mem_mb", "peak_cuda_mem_mb"):
            if key in merged:
                merged[key] = max(run[key] for run in runs)
        merged["warmup_s"] = [run["warmup_s"] for run in runs]
    merged["rounds"] = len(runs)
    return merged


def ratios(ours: dict, peer: dict) -> dict:
    return {
        "samples_per_s": ours["samples_per_s"] / peer["samples_per_s"],
        "peak_mem": ours["peak_mem_mb"] / peer["peak_mem_mb"] if peer["peak_mem_mb"] > 0 else None,
    }


def run_bench(
    model: str,
    task: str,
    modes: tuple[str, ...],
    amp: str = "off",
    batch_size: int | None = None,
    compare: tuple[str, ...] = (),
    steps: int = 5,
    warmup: int = 2,
    threads: int = 0,
    time_steps: int | None = None,
    fold_bn: bool = True,
    channels_last: bool = True,
    worker_timeout_s: float | None = None,
    rounds: int = 1,
    device: str = "cpu",
) -> dict:
    """The whole comparison as one JSON-ready dict: machine, matmul rates, per-mode results."""
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    report = {
        "model": model, "task": task, "amp": amp, "compare": list(compare),
        "machine": machine_info(threads, device), "modes": {},
    }
    report["matmul_gflops"] = {"fp32": rates.matmul_gflops(torch.float32, device=device)}
    if amp == "bf16":
        report["matmul_gflops"]["bf16"] = rates.matmul_gflops(torch.bfloat16, device=device)
    rate = report["matmul_gflops"]["bf16" if amp == "bf16" else "fp32"]
    for mode in modes:
        specs = [
            BenchSpec(
                impl=impl, model=model, task=task, mode=mode, batch_size=batch_size or DEFAULT_BATCH[mode],
                amp=amp, time_steps=time_steps, steps=steps, warmup=warmup, threads=threads,
                fold_bn=fold_bn, channels_last=channels_last, device=device,
            )
            for impl in ("suite", *compare)
        ]
        flops = rates.flops_per_sample(specs[0])
        runs: dict[str, list[dict]] = {spec.impl: [] for spec in specs}
        for _ in range(rounds):  # alternate implementations so that both see the same background load
            for spec in specs:
                runs[spec.impl].append(run_worker(spec, worker_timeout_s))
        results = {}
        for impl, impl_runs in runs.items():
            results[impl] = merge_rounds(impl_runs)
            add_rates(results[impl], flops, rate)
        entry = {"results": results}
        if compare:
            entry["ratios"] = {peer: ratios(results["suite"], results[peer]) for peer in compare}
        report["modes"][mode] = entry
    report["machine"]["load_avg_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return report


def format_report(report: dict) -> str:
    """The human-readable table of a `run_bench` report."""
    rates_line = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report["matmul_gflops"].items())
    m = report["machine"]
    load = f"; load average at start {m['load_avg_1m']:.2f}" if m["load_avg_1m"] is not None else ""
    if m.get("load_avg_1m_end") is not None:
        load += f", at end {m['load_avg_1m_end']:.2f}"
    if m.get("gpu"):
        load += f"; on {m['gpu']}, steps timed with CUDA events, peak MB from the CUDA allocator"
    lines = [
        f"{report['model']} on {report['task']} shapes, amp {report['amp']}, {m['threads']} threads "
        f"({m['cpu_capability']}), torch {m['torch']}; matmul rate: {rates_line}{load}",
        "",
    ]
    rows = []
    for mode, entry in report["modes"].items():
        for impl, r in entry["results"].items():
            rows.append({
                "mode": mode, "impl": impl, "batch": r["batch_size"], "samples/s": f"{r['samples_per_s']:.2f}",
                "step ms": f"{r['step_s'] * 1e3:.0f}", "peak MB": f"{r['peak_mem_mb']:.0f}",
                "GFLOP/s": f"{r['achieved_gflops']:.1f}", "of matmul": f"{r['share_of_matmul']:.0%}",
            })
        for peer, ratio in entry.get("ratios", {}).items():
            mem = f"{ratio['peak_mem']:.2f}x" if ratio["peak_mem"] is not None else "n/a"
            rows.append({"mode": mode, "impl": f"suite/{peer}", "samples/s": f"{ratio['samples_per_s']:.2f}x", "peak MB": mem})
    lines.append(format_table(rows, ["mode", "impl", "batch", "samples/s", "step ms", "peak MB", "GFLOP/s", "of matmul"]))
    flops = {mode: entry["results"]["suite"]["flops_per_sample"] for mode, entry in report["modes"].items()}
    lines.append("")
    lines.append("nominal GFLOP per sample: " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in flops.items()))
    return "\n".join(lines)
