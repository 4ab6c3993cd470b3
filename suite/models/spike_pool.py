"""Max-pooling of spike maps without ATen's int64 argmax indices (native CPU kernel,
suite/models/kernels/csrc/maxpool_cpu.cpp).

`SpikeMaxPool2d` is an `nn.MaxPool2d` (same arguments, state and repr) whose forward, for
channels-last float32/bfloat16 CPU tensors, runs the native kernel: backward recomputes each
window's maximum from the saved input instead of keeping an index per output, and when the
input is spikes with a uint8 copy (see spike_storage) it is that copy that backward keeps. The
output and gradients equal nn.MaxPool2d's (ATen routes a window's gradient to the first maximum
in scan order; so does the kernel). Other inputs, dilation, ceil_mode or return_indices go to
nn.MaxPool2d itself.
"""

from __future__ import annotations

import torch
from torch import nn

from suite.models import spike_storage
from suite.models.kernels import native_cpu
from suite.models.kernels.fused_lif import KERNELS  # its native_enabled switch turns native kernels off


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _square(v) -> int | None:
    a, b = _pair(v)
    return a if a == b else None


def _output_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


class SpikeMaxPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
        N, C, H, W = x.shape
        Ho, Wo = _output_size(H, k, s, p), _output_size(W, k, s, p)
        out = torch.empty((N, C, Ho, Wo), dtype=x.dtype, memory_format=torch.channels_last)
        compact = torch.empty_like(out, dtype=torch.uint8) if spike_storage.wants_compact(out) else None
        ctx.geometry = (N, H, W, C, Ho, Wo, k, s, p)
        native_cpu.maxpool_forward(x, out, compact, ctx.geometry)
        twin = spike_storage._twin_view(x)
        kept = twin if twin is not None and twin.is_contiguous(memory_format=torch.channels_last) else x.detach()
        ctx.save_for_backward(kept)
        ctx.input_dtype = x.dtype
        if spike_storage.is_marked(x):  # the maximum of spikes is a spike: the next layer may compact it
            spike_storage.mark_spikes(out, compact)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (kept,) = ctx.saved_tensors
        N, H, W, C = ctx.geometry[:4]
        grad_out = grad_out.to(ctx.input_dtype).contiguous(memory_format=torch.channels_last)
        kept = kept.contiguous(memory_format=torch.channels_last)
        grad_in = torch.empty((N, C, H, W), dtype=ctx.input_dtype, memory_format=torch.channels_last)
        native_cpu.maxpool_backward(kept, grad_out, grad_in, ctx.geometry)
        return grad_in, None, None, None


class SpikeMaxPool2d(nn.MaxPool2d):
    def native_geometry(self, x: torch.Tensor) -> tuple[int, int, int] | None:
        """(kernel, stride, padding) when the native kernel can run this call, else None."""
        k, s, p = _square(self.kernel_size), _square(self.stride or self.kernel_size), _square(self.padding)
        if None in (k, s, p) or _square(self.dilation) != 1 or self.ceil_mode or self.return_indices:
            return None
        if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or not native_cpu.supports(x):
            return None
        return k, s, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        geometry = self.native_geometry(x) if KERNELS.native_enabled else None
        if geometry is None:
            return super().forward(x)
        return SpikeMaxPoolFunction.apply(x, *geometry)
