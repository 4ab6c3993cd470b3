"""The two yardsticks of a run: this machine's matmul rate and the model's FLOPs per sample.

Achieved GFLOP/s = the model's nominal FLOPs per sample (convolutions and matmuls, forward and,
for training, backward; counted once on the reference model) x samples/s. Both implementations
are credited with the same nominal FLOPs, so GFLOP/s ratios equal throughput ratios, and the
share of the matmul rate says how close a step is to what this machine's GEMMs can do.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics

import torch

from suite.bench.spec import BenchSpec
from suite.bench.timing import time_call

log = logging.getLogger(__name__)

AMP_DTYPES = {"off": torch.float32, "bf16": torch.bfloat16}


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5, device: str = "cpu") -> float:
    """Median GFLOP/s of an n x n x n matmul on `device` (on CPU with the current torch thread
    count)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(dtype).to(device)
    b = torch.randn(n, n, generator=generator).to(dtype).to(device)
    out = torch.empty(n, n, dtype=dtype, device=device)
    torch.mm(a, b, out=out)  # warm-up: thread pool, packing buffers, cuBLAS handles
    times = [time_call(lambda: torch.mm(a, b, out=out), device) for _ in range(reps)]
    return 2 * n**3 / statistics.median(times) / 1e9


def flops_per_sample(spec: BenchSpec, batch_size: int = 2) -> float:
    """Nominal FLOPs of one sample's step (train: forward + backward; infer: forward), counted by
    torch's FlopCounterMode on the fp32 reference model with a small batch."""
    from torch.utils.flop_counter import FlopCounterMode

    from suite.bench.workloads import suite_config
    from suite.models import Spikformer

    cfg, task = suite_config(spec)
    model = Spikformer(dataclasses.replace(cfg, lif_backend="reference"))
    x = torch.randn(batch_size, *task.sample_shape(cfg.time_steps))
    counter = FlopCounterMode(display=False)
    if spec.mode == "train":
        model.train()
        with counter:
            model(x).sum().backward()
    else:
        model.eval()
        with counter, torch.no_grad():
            model(x)
    return counter.get_total_flops() / batch_size
