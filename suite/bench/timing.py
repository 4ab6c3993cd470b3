"""How long one call takes on a device: host wall time on CPU; on CUDA, CUDA events recorded
around the call and read after synchronising, since kernels run asynchronously and host time
would measure only their launch."""

from __future__ import annotations

import time
from typing import Callable

import torch

from suite.bench.spec import DEVICES


def time_call(fn: Callable[[], object], device: str = "cpu") -> float:
    """Seconds `fn()` takes on `device` ("cpu" or "cuda"), work queued before it excluded."""
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def require_device(device: str) -> None:
    """ValueError naming the problem when `device` is unknown or CUDA is absent."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r} not in {DEVICES}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
