"""Triton kernels for the fused multi-step LIF on CUDA (backend "fused_cuda").

Registered by `suite.models.kernels.dispatch` when CUDA and triton are available; CPU tensors
reach this module only under Triton's interpreter (TRITON_INTERPRET=1), which is how
tests/test_triton_interpreter.py runs these kernels in CI on a machine without a GPU. Same
recurrences as suite.models.kernels.fused_lif: each program owns BLOCK neurons and walks the T
steps, forward keeping v in registers, backward first recomputing h[t] into a scratch buffer, then
running BPTT in reverse. Division is correctly rounded (div_rn), as the reference's is on CPU.

Precision: the membrane is always fp32. fp16/bf16 inputs are widened when loaded, spikes and
gradients are rounded to the input dtype when stored, nothing in between. This is spikingjelly
2.0's rule too (its LIF kernels compute fp16/bf16 neurons in fp32), and it is the right one for a
threshold recurrence: an fp16/bf16 membrane rounds every step and flips near-threshold spikes.
The reference LIF instead computes in its input's dtype, so the exact comparison for fp16/bf16 is
with `lif_reference(x.float())` rounded to x's dtype (spikes identical, gradients within one
rounding); against the reference run in fp16/bf16 a small share of near-threshold spikes differs
(see suite.models.lif_equivalence, which both the tests and `suite doctor --gpu` use).

Offsets: element t*N + n is computed in int64 (`_lanes`, `_step_offsets`), so layers with
T*N >= 2^31 elements index correctly; the tests evaluate these helpers at such values.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from suite.models.kernels.layout import in_layout, restore_layout, time_major_2d

BLOCK = 1024


@triton.jit
def _lanes(pid, BLOCK: tl.constexpr):
    """The neuron indices program `pid` owns, in int64 (pid * BLOCK passes 2^31 on large layers)."""
    return pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)


@triton.jit
def _step_offsets(t, N, lanes):
    """Element offsets of time step t for these lanes in a [T, N] row-major tensor; t is widened
    before the product because t * N in int32 wraps once T * N > 2^31. tl.cast, not t.to():
    under the interpreter a loop variable is a plain Python int."""
    return tl.cast(t, tl.int64) * N + lanes


@triton.jit
def _lif_forward_kernel(x_ptr, s_ptr, N, T, tau, v_th, BLOCK: tl.constexpr):
    lanes = _lanes(tl.program_id(0), BLOCK)
    mask = lanes < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        offs = _step_offsets(t, N, lanes)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        h = v + tl.math.div_rn(x - v, tau)
        fired = h >= v_th
        # not fired.to(...): Triton 3.8's interpreter cannot cast int1 to a float type
        tl.store(s_ptr + offs, tl.where(fired, 1.0, 0.0).to(s_ptr.dtype.element_ty), mask=mask)
        v = tl.where(fired, 0.0, h)


@triton.jit
def _lif_backward_kernel(g_ptr, x_ptr, h_ptr, gx_ptr, N, T, tau, v_th, alpha, BLOCK: tl.constexpr):
    lanes = _lanes(tl.program_id(0), BLOCK)
    mask = lanes < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        offs = _step_offsets(t, N, lanes)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        h = v + tl.math.div_rn(x - v, tau)
        tl.store(h_ptr + offs, h, mask=mask)
        v = tl.where(h >= v_th, 0.0, h)
    grad_v = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        offs = _step_offsets(t, N, lanes)
        h = tl.load(h_ptr + offs, mask=mask, other=0.0)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        sg = tl.sigmoid(alpha * (h - v_th))
        grad_h = g * (alpha * sg * (1.0 - sg)) + tl.where(h >= v_th, 0.0, grad_v)
        grad_x = tl.math.div_rn(grad_h, tau)
        tl.store(gx_ptr + offs, grad_x.to(gx_ptr.dtype.element_ty), mask=mask)
        grad_v = grad_h - grad_x


def _grid(n: int):
    return (triton.cdiv(n, BLOCK),)


def _forward_spikes(x2d: torch.Tensor, tau: float, v_threshold: float) -> torch.Tensor:
    T, N = x2d.shape
    spikes = torch.empty_like(x2d)
    _lif_forward_kernel[_grid(N)](x2d, spikes, N, T, float(tau), float(v_threshold), BLOCK=BLOCK)
    return spikes


class TritonLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
        x2d = time_major_2d(x)
        spikes = _forward_spikes(x2d, tau, v_threshold)
        ctx.save_for_backward(x2d)
        ctx.params = (float(tau), float(v_threshold), float(alpha))
        out = restore_layout(spikes, x)
        ctx.layout = (out.shape, out.stride())
        return out

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (x2d,) = ctx.saved_tensors
        T, N = x2d.shape
        grad_spikes = in_layout(grad_spikes, *ctx.layout)
        grad2d = time_major_2d(grad_spikes)
        scratch = torch.empty(T, N, dtype=torch.float32, device=x2d.device)
        grad_x = torch.empty_like(x2d)
        _lif_backward_kernel[_grid(N)](grad2d, x2d, scratch, grad_x, N, T, *ctx.params, BLOCK=BLOCK)
        return restore_layout(grad_x, grad_spikes), None, None, None


def interpreting() -> bool:
    """Whether Triton runs kernels through its CPU interpreter (TRITON_INTERPRET=1 before import)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def lif_triton(x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
    if not x.is_cuda and not interpreting():
        raise ValueError(
            f"the 'fused_cuda' LIF backend needs a CUDA tensor, got one on {x.device} "
            "(CPU tensors run only under Triton's interpreter, TRITON_INTERPRET=1)"
        )
    if x.numel() == 0:
        return torch.zeros_like(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return TritonLIFFunction.apply(x, tau, v_threshold, alpha)
    return restore_layout(_forward_spikes(time_major_2d(x), tau, v_threshold), x)
