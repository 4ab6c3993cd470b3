"""Triton kernels for the fused multi-step LIF on CUDA (backend "fused_cuda").

Imported by `suite.models.lif_fused` only when CUDA and triton are available; CPU tensors never
reach this module (they use the inductor-compiled kernels of lif_fused). Same recurrences as
lif_fused: each program owns BLOCK neurons and walks the T steps, forward keeping v in registers,
backward first recomputing h[t] into a scratch buffer, then running BPTT in reverse. Arithmetic
is fp32 with correctly rounded division, matching the reference in fp32.

NOTE: written and reviewed on a machine without a GPU; tests/test_fast_lif.py checks it against
the reference whenever CUDA is present.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from suite.models.lif_fused import _in_layout, _restore, _time_major_2d
from suite.models.neuron import BACKENDS

BLOCK = 1024


@triton.jit
def _lif_forward_kernel(x_ptr, s_ptr, N, T, tau, v_th, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        x = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0).to(tl.float32)
        h = v + tl.math.div_rn(x - v, tau)
        fired = h >= v_th
        tl.store(s_ptr + t * N + offs, fired.to(s_ptr.dtype.element_ty), mask=mask)
        v = tl.where(fired, 0.0, h)


@triton.jit
def _lif_backward_kernel(g_ptr, x_ptr, h_ptr, gx_ptr, N, T, tau, v_th, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        x = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0).to(tl.float32)
        h = v + tl.math.div_rn(x - v, tau)
        tl.store(h_ptr + t * N + offs, h, mask=mask)
        v = tl.where(h >= v_th, 0.0, h)
    grad_v = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        h = tl.load(h_ptr + t * N + offs, mask=mask, other=0.0)
        g = tl.load(g_ptr + t * N + offs, mask=mask, other=0.0).to(tl.float32)
        sg = tl.sigmoid(alpha * (h - v_th))
        grad_h = g * (alpha * sg * (1.0 - sg)) + tl.where(h >= v_th, 0.0, grad_v)
        grad_x = tl.math.div_rn(grad_h, tau)
        tl.store(gx_ptr + t * N + offs, grad_x.to(gx_ptr.dtype.element_ty), mask=mask)
        grad_v = grad_h - grad_x


def _grid(n: int):
    return (triton.cdiv(n, BLOCK),)


class TritonLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
        x2d = _time_major_2d(x)
        T, N = x2d.shape
        spikes = torch.empty_like(x2d)
        _lif_forward_kernel[_grid(N)](x2d, spikes, N, T, float(tau), float(v_threshold), BLOCK=BLOCK)
        ctx.save_for_backward(x2d)
        ctx.params = (float(tau), float(v_threshold), float(alpha))
        out = _restore(spikes, x)
        ctx.layout = (out.shape, out.stride())
        return out

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (x2d,) = ctx.saved_tensors
        T, N = x2d.shape
        grad_spikes = _in_layout(grad_spikes, *ctx.layout)
        grad2d = _time_major_2d(grad_spikes)
        scratch = torch.empty(T, N, dtype=torch.float32, device=x2d.device)
        grad_x = torch.empty_like(x2d)
        _lif_backward_kernel[_grid(N)](grad2d, x2d, scratch, grad_x, N, T, *ctx.params, BLOCK=BLOCK)
        return _restore(grad_x, grad_spikes), None, None, None


def lif_triton(x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
    if not x.is_cuda:
        raise ValueError(f"the 'fused_cuda' LIF backend needs a CUDA tensor, got one on {x.device}")
    if x.numel() == 0:
        return torch.zeros_like(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return TritonLIFFunction.apply(x, tau, v_threshold, alpha)
    x2d = _time_major_2d(x)
    T, N = x2d.shape
    spikes = torch.empty_like(x2d)
    _lif_forward_kernel[_grid(N)](x2d, spikes, N, T, float(tau), float(v_threshold), BLOCK=BLOCK)
    return _restore(spikes, x)


BACKENDS["fused_cuda"] = lif_triton
