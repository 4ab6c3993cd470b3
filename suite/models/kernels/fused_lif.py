"""Fused multi-step LIF: one pass over T forward and one backward, saving only the input currents.

The reference backend (`suite.models.neuron.lif_reference`) builds a small autograd graph per time
step and keeps at least two input-sized float tensors per step alive until backward. Here forward runs without
autograd and saves only x; backward recomputes h[t] from x (cheap, elementwise) and runs the exact
BPTT recurrence of the reference graph, with hard reset to 0 and detach_reset:

    dL/dh[t]   = dL/ds[t] * sg'(h[t] - v_th) + dL/dv[t] * (1 - s[t])
    dL/dx[t]   = dL/dh[t] / tau
    dL/dv[t-1] = dL/dh[t] - dL/dx[t]        (= dL/dh[t] * (1 - 1/tau), in autograd's own order)

with dL/dv[T-1] = 0 and sg'(u) = alpha * sigmoid(alpha u) * (1 - sigmoid(alpha u)).

On CPU (float32, bfloat16) both run as hand-written native kernels (native_cpu.py, compiled on
first use; each torch kernel and its native twin are declared together as a `Kernel`). Elsewhere, or without a C++ compiler, they are the plain tensor code
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
from dataclasses import dataclass
from typing import Callable

import torch

from suite.models.kernels import native_cpu
from suite.models.kernels.layout import in_layout, restore_layout, time_major_2d
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


@dataclass(frozen=True)
class Kernel:
    """One computation in its two implementations: the torch code, which defines it (compiled by
    inductor where that pays), and the native CPU function that replaces it where it can run."""

    torch_fn: Callable
    native_fn: Callable


LIF_FORWARD = Kernel(lif_forward_steps, native_cpu.native_lif_forward_steps)
LIF_BACKWARD = Kernel(lif_backward_steps, native_cpu.native_lif_backward_steps)


class _Kernels:
    """Runs a `Kernel`: its native function where that can run, else its torch code compiled
    (torch.compile, on first use) for tensors big enough to repay the compile time (seconds per process; inductor caches the code on disk), eagerly below
    that size, and eagerly for good once compiling has failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: dict[Callable, Callable] = {}
        self.compile_enabled = os.environ.get("SUITE_LIF_COMPILE", "1").lower() not in ("0", "false", "no", "off")
        # Below ~1M elements the eager kernels take about a millisecond per step.
        self.compile_min_elements = int(os.environ.get("SUITE_LIF_COMPILE_MIN_ELEMENTS", 1 << 20))
        self.native_enabled = native_cpu.enabled()  # hand-written CPU kernels (csrc/)

    def compiled(self, fn: Callable) -> Callable:
        with self._lock:
            if fn not in self._compiled:
                # dynamic=True: one graph serves every layer's sizes; T is specialised (the loop unrolls).
                self._compiled[fn] = torch.compile(fn, dynamic=True)
            return self._compiled[fn]

    def run(self, kernel: Kernel, x: torch.Tensor, *args):
        """kernel(x, *args): by its native CPU function where that can run x, else by its torch
        code, compiled when x is big enough, else eagerly."""
        if self.native_enabled and native_cpu.supports(x):
            return kernel.native_fn(x, *args)
        fn = kernel.torch_fn
        if not (self.compile_enabled and x.numel() >= self.compile_min_elements):
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


class FusedLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
        x2d = time_major_2d(x).detach()  # not a view: compiled kernels would guard on its base
        spikes = restore_layout(mark_spikes(KERNELS.run(LIF_FORWARD, x2d, tau, v_threshold)), x)
        ctx.save_for_backward(x2d)
        ctx.params = (tau, v_threshold, alpha)
        ctx.layout = (spikes.shape, spikes.stride())
        return mark_spikes(spikes)

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (x2d,) = ctx.saved_tensors
        grad_spikes = in_layout(grad_spikes, *ctx.layout)
        grad2d = time_major_2d(grad_spikes).detach()
        grad_x = KERNELS.run(LIF_BACKWARD, grad2d, x2d, *ctx.params)
        return restore_layout(grad_x, grad_spikes), None, None, None


def lif_fused(x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
    """Drop-in for `lif_reference`: same spikes, same gradients (to rounding), far less memory."""
    if x.shape[0] == 0 or x.numel() == 0:
        return torch.zeros_like(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return FusedLIFFunction.apply(x, tau, v_threshold, alpha)
    return restore_layout(KERNELS.run(LIF_FORWARD, time_major_2d(x).detach(), tau, v_threshold), x)
