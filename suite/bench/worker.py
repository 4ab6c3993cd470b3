"""One benchmark configuration in its own process: `python -m suite.bench.worker '<spec json>'`.

Prints one JSON line on stdout: the result, or {"error": ...} with exit code 1. Peak memory on
CPU is this process's peak resident set size minus its size after the imports, so it counts the
model, optimizer state, activations and workspace of this configuration and not the libraries; on
CUDA it is the CUDA allocator's peak above its size after the imports (the host figure is kept
as peak_host_mem_mb). On CUDA each step is timed with CUDA events (suite.bench.timing).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import sys
import time
import traceback

log = logging.getLogger(__name__)


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def memory_baseline() -> int:
    """The resident size to subtract from the final peak. Linux lets a process reset its peak
    (VmHWM) to its current size; elsewhere the peak so far (imports included) is the baseline."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return max_rss_bytes()


def preload(impl: str) -> None:
    """Import everything the configuration uses before the memory baseline, so library code is
    never counted as the model's memory."""
    import torch  # noqa: F401

    from suite.bench import workloads  # noqa: F401

    if impl == "suite":
        import torch._inductor.compile_fx  # noqa: F401  (the fused LIF compiles its kernels)

        import suite.models  # noqa: F401
    else:
        import spikingjelly.activation_based.model.spikformer  # noqa: F401


def measure(spec) -> dict:
    import torch
    from tqdm import tqdm

    from suite.bench.timing import require_device, time_call
    from suite.bench.workloads import build_workload

    require_device(spec.device)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    preload(spec.impl)
    cuda = spec.device == "cuda"
    if cuda:  # CUDA context and allocator up before the baselines
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
        cuda_baseline = torch.cuda.memory_allocated()
    baseline = memory_baseline()
    workload = build_workload(spec)
    label = f"{spec.impl} {spec.mode}"
    start = time.perf_counter()
    for _ in tqdm(range(spec.warmup), desc=f"{label} warm-up", leave=False, file=sys.stderr):
        workload.step()
    if cuda:
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - start
    times = [
        time_call(workload.step, spec.device)
        for _ in tqdm(range(spec.steps), desc=label, leave=False, file=sys.stderr)
    ]
    step_s = statistics.median(times)
    device_memory = {}
    if cuda:  # the peak the CUDA allocator saw above the baseline: model, optimizer, activations
        device_memory = {
            "gpu": torch.cuda.get_device_name(),
            "peak_cuda_mem_mb": (torch.cuda.max_memory_allocated() - cuda_baseline) / 2**20,
        }
    host_peak_mb = (max_rss_bytes() - baseline) / 2**20
    return {
        "impl": spec.impl,
        "mode": spec.mode,
        "amp": spec.amp,
        "batch_size": spec.batch_size,
        "threads": torch.get_num_threads(),
        "steps": spec.steps,
        "warmup": spec.warmup,
        "warmup_s": warmup_s,
        "step_s": step_s,
        "step_s_all": times,
        "samples_per_s": spec.batch_size / step_s,
        "peak_mem_mb": device_memory["peak_cuda_mem_mb"] if cuda else host_peak_mb,
        "peak_host_mem_mb": host_peak_mb,
        "baseline_mem_mb": baseline / 2**20,
        "peak_rss_mb": max_rss_bytes() / 2**20,
        "params": sum(p.numel() for p in workload.model.parameters()),
        **device_memory,
        **workload.details,
    }


def main(argv: list[str] | None = None) -> int:
    from suite.bench.spec import BenchSpec

    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if len(argv) != 1:
            raise ValueError("usage: python -m suite.bench.worker '<BenchSpec JSON>'")
        result = measure(BenchSpec.from_json(argv[0]))
    except Exception as err:  # reported to the parent as data; it raises a SuiteError with this text
        print(json.dumps({"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
