"""Fused multi-step LIF: one pass over T forward and one backward, saving only the input currents.

The reference backend (`suite.models.neuron.lif_reference`) builds a small autograd graph per time
step and keeps at least two input-sized float tensors per step alive until backward. Here forward runs without
autograd and saves only x; backward recomputes h[t] from x (cheap, elementwise) and runs the exact
BPTT recurrence of the reference graph, with hard reset to 0 and detach_reset:

    dL/dh[t]   = dL/ds[t] * sg'(h[t] - v_th) + dL/dv[t] * (1 - s[t])
    dL/dx[t]   = dL/dh[t] / tau
    dL/dv[t-1] = dL/dh[t] - dL/dx[t]        (= dL/dh[t] * (1 - 1/tau), in autograd's own order)

with dL/dv[T-1] = 0 and sg'(u) = alpha * sigmoid(alpha u) * (1 - sigmoid(alpha u)).

On CPU (float32, bfloat16) both run as hand-written native kernels (suite/models/lif_cpu.py,
compiled on first use). Elsewhere, or without a C++ compiler, they are the plain tensor code
below over a [T, N] view, which torch.compile (inductor) fuses into a single loop over N; one
compiled graph (dynamic N) serves every layer. Tensors under SUITE_LIF_COMPILE_MIN_ELEMENTS
(default 2^20, so tiny test models never wait for a compiler) and any run where compiling fails
use the same code eagerly, still without per-step graphs. Set SUITE_LIF_COMPILE=0 to skip
compiling altogether, SUITE_NATIVE_KERNELS=0 to skip the native kernels.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

import torch

from suite.models import lif_cpu
from suite.models.neuron import AUTO_EXCLUDED, BACKENDS, LIF, backend_name
from suite.models.spike_storage import mark_spikes

log = logging.getLogger(__name__)


def lif_forward_steps(x: torch.Tensor, tau: float, v_threshold: float) -> torch.Tensor:
    """x: [T, N] -> spikes [T, N] in x's dtype; the same arithmetic as the reference, step by step."""
    v = torch.zeros_like(x[0])
    spikes = []
    for x_t in x.unbind(0):
        h = v + (x_t - v) / tau
        fired = h >= v_threshold
        v = torch.where(fired, 0.0, h)  # == h * (1 - s) for finite h: the hard reset to 0
        spikes.append(fired.to(x.dtype))  # cast per step: inductor then writes floats in its one loop
    return torch.stack(spikes)


def membrane_steps(currents, tau: float, v_threshold: float) -> list[torch.Tensor]:
    """h[t] for each input current of an iterable over T, as the forward computes them."""
    hs, v = [], None
    for x_t in currents:
        v = torch.zeros_like(x_t) if v is None else v
        h = v + (x_t - v) / tau
        v = torch.where(h >= v_threshold, 0.0, h)
        hs.append(h)
    return hs


def bptt_steps(grad_spikes: torch.Tensor, hs: list[torch.Tensor], tau: float, v_threshold: float, alpha: float):
    """dL/dx [T, ...] from dL/ds [T, ...] and the recomputed membranes h[t] (the recurrence above)."""
    grad_v = torch.zeros_like(hs[0])
    grads = [grad_v] * len(hs)
    for t in range(len(hs) - 1, -1, -1):
        sg = torch.sigmoid(alpha * (hs[t] - v_threshold))
        grad_h = grad_spikes[t] * (alpha * sg * (1.0 - sg)) + torch.where(hs[t] >= v_threshold, 0.0, grad_v)
        grads[t] = grad_h / tau
        grad_v = grad_h - grads[t]
    return torch.stack(grads)


def lif_backward_steps(
    grad_spikes: torch.Tensor, x: torch.Tensor, tau: float, v_threshold: float, alpha: float
) -> torch.Tensor:
    """dL/dx [T, N] from dL/ds [T, N] and the saved input x [T, N] (h is recomputed, not stored)."""
    return bptt_steps(grad_spikes, membrane_steps(x.unbind(0), tau, v_threshold), tau, v_threshold, alpha)


class _Kernels:
    """Runs a kernel function compiled (torch.compile, on first use) for tensors big enough to
    repay the compile time (seconds per process; inductor caches the code on disk), eagerly below
    that size, and eagerly for good once compiling has failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: dict[Callable, Callable] = {}
        self.compile_enabled = os.environ.get("SUITE_LIF_COMPILE", "1").lower() not in ("0", "false", "no", "off")
        # Below ~1M elements the eager kernels take about a millisecond per step.
        self.compile_min_elements = int(os.environ.get("SUITE_LIF_COMPILE_MIN_ELEMENTS", 1 << 20))
        self.native_enabled = lif_cpu.enabled()  # hand-written CPU kernels (csrc/lif_cpu.cpp)

    def compiled(self, fn: Callable) -> Callable:
        with self._lock:
            if fn not in self._compiled:
                # dynamic=True: one graph serves every layer's sizes; T is specialised (the loop unrolls).
                self._compiled[fn] = torch.compile(fn, dynamic=True)
            return self._compiled[fn]

    def run(self, fn: Callable, x: torch.Tensor, *args, compile: bool | None = None, native: bool = True):
        """fn(x, *args): by its native CPU twin where there is one (and native=True), else
        compiled when x is big enough (or when compile=True), else eagerly."""
        if native and self.native_enabled and fn.__name__ in lif_cpu.NATIVE and lif_cpu.supports(x):
            return lif_cpu.NATIVE[fn.__name__](x, *args)
        if compile is None:
            compile = self.compile_enabled and x.numel() >= self.compile_min_elements
        if not compile:
            return fn(x, *args)
        try:
            return self.compiled(fn)(x, *args)
        except Exception as err:  # compile failures surface as many types (C++ toolchain, dynamo, inductor)
            log.warning(
                "torch.compile of %s failed (%s: %s); using the eager kernel from now on. "
                "Set SUITE_LIF_COMPILE=0 to skip compiling.",
                fn.__name__, type(err).__name__, str(err).splitlines()[0] if str(err) else "",
            )
            self.compile_enabled = False
            return fn(x, *args)


KERNELS = _Kernels()


def _dense_time_outermost(x: torch.Tensor) -> bool:
    """True when x fills its memory block without gaps and time is its outermost dimension, so
    that memory order is a [T, N] matrix (contiguous and channels-last activations are)."""
    order = sorted(range(x.dim()), key=lambda d: x.stride(d), reverse=True)
    expected = 1
    for d in reversed(order):
        if x.shape[d] != 1 and x.stride(d) != expected:
            return False
        expected *= x.shape[d]
    return order[0] == 0 or x.shape[0] == 1


def _time_major_2d(x: torch.Tensor) -> torch.Tensor:
    """A [T, N] view of x in memory order; other layouts are copied to contiguous first."""
    T = x.shape[0]
    if x.is_contiguous():
        return x.view(T, -1)
    if _dense_time_outermost(x):
        return x.as_strided((T, x.numel() // T), (x.numel() // T, 1))
    return x.contiguous().view(T, -1)


def _restore(y2d: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [T, N] result given the shape and memory order of `like` (inverse of `_time_major_2d`)."""
    if not like.is_contiguous() and _dense_time_outermost(like):
        return y2d.as_strided(like.shape, like.stride())
    return y2d.view(like.shape)


def _in_layout(t: torch.Tensor, shape: torch.Size, stride: tuple[int, ...]) -> torch.Tensor:
    """t itself if it already has this layout, else a copy that has it (gradients may arrive in
    any layout; the kernels need the saved input's memory order)."""
    if t.stride() == stride:
        return t
    return torch.empty_strided(shape, stride, dtype=t.dtype, device=t.device).copy_(t)


class FusedLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
        x2d = _time_major_2d(x).detach()  # not a view: compiled kernels would guard on its base
        spikes = _restore(mark_spikes(KERNELS.run(lif_forward_steps, x2d, tau, v_threshold)), x)
        ctx.save_for_backward(x2d)
        ctx.params = (tau, v_threshold, alpha)
        ctx.layout = (spikes.shape, spikes.stride())
        return mark_spikes(spikes)

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (x2d,) = ctx.saved_tensors
        grad_spikes = _in_layout(grad_spikes, *ctx.layout)
        grad2d = _time_major_2d(grad_spikes).detach()
        grad_x = KERNELS.run(lif_backward_steps, grad2d, x2d, *ctx.params)
        return _restore(grad_x, grad_spikes), None, None, None


def lif_fused(x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
    """Drop-in for `lif_reference`: same spikes, same gradients (to rounding), far less memory."""
    if x.shape[0] == 0 or x.numel() == 0:
        return torch.zeros_like(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return FusedLIFFunction.apply(x, tau, v_threshold, alpha)
    return _restore(KERNELS.run(lif_forward_steps, _time_major_2d(x).detach(), tau, v_threshold), x)


BACKENDS["fused"] = lif_fused
BACKENDS["fused_cpu"] = lif_fused

if torch.cuda.is_available():
    try:
        from suite.models import lif_triton

        lif_triton.register(BACKENDS, AUTO_EXCLUDED)
    except ImportError as err:  # no triton: CUDA tensors use the torch.compile kernels above
        log.info("Triton LIF kernels unavailable (%s); CUDA uses the compiled 'fused' backend", err)


def describe_backends(model: torch.nn.Module, device: torch.device) -> str:
    """What the model's LIF layers run on here, e.g. "fused_cpu (native C++ kernels /path/lif_cpu-<key>.so)":
    the line a run logs so that a slow fallback never goes unnoticed."""
    names = sorted({backend_name(m.backend, device) for m in model.modules() if isinstance(m, LIF)})
    return ", ".join(f"{name} ({_how(name, device)})" for name in names) or "no LIF layers"


def _how(name: str, device: torch.device) -> str:
    if BACKENDS[name] is not lif_fused:
        known = {"reference": "per-step autograd", "fused_cuda": "Triton kernels", "spikingjelly": "spikingjelly's kernels"}
        return known.get(name, BACKENDS[name].__module__)
    if device.type != "cpu":
        return "torch kernels"
    if not KERNELS.native_enabled:
        return "torch kernels; native kernels off"
    return lif_cpu.status() if lif_cpu.available() else f"torch kernels; {lif_cpu.status()}"
