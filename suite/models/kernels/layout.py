"""Views between an activation [T, ...] in any memory layout and the [T, N] matrix the LIF kernels
walk (time outermost, neurons contiguous), shared by every kernel family (torch, native, Triton)."""

from __future__ import annotations

import torch


def dense_time_outermost(x: torch.Tensor) -> bool:
    """True when x fills its memory block without gaps and time is its outermost dimension, so
    that memory order is a [T, N] matrix (contiguous and channels-last activations are)."""
    order = sorted(range(x.dim()), key=lambda d: x.stride(d), reverse=True)
    expected = 1
    for d in reversed(order):
        if x.shape[d] != 1 and x.stride(d) != expected:
            return False
        expected *= x.shape[d]
    return order[0] == 0 or x.shape[0] == 1


def time_major_2d(x: torch.Tensor) -> torch.Tensor:
    """A [T, N] view of x in memory order; other layouts are copied to contiguous first."""
    T = x.shape[0]
    if x.is_contiguous():
        return x.view(T, -1)
    if dense_time_outermost(x):
        return x.as_strided((T, x.numel() // T), (x.numel() // T, 1))
    return x.contiguous().view(T, -1)


def restore_layout(y2d: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [T, N] result given the shape and memory order of `like` (inverse of `time_major_2d`)."""
    if not like.is_contiguous() and dense_time_outermost(like):
        return y2d.as_strided(like.shape, like.stride())
    return y2d.view(like.shape)


def in_layout(t: torch.Tensor, shape: torch.Size, stride: tuple[int, ...]) -> torch.Tensor:
    """t itself if it already has this layout, else a copy that has it (gradients may arrive in
    any layout; the kernels need the saved input's memory order)."""
    if t.stride() == stride:
        return t
    return torch.empty_strided(shape, stride, dtype=t.dtype, device=t.device).copy_(t)
