"""Keep spike tensors saved for backward as uint8 instead of float (4x less activation memory).

Every conv, linear and max-pool after a LIF saves its input, the spikes, for its own backward.
Spikes are exactly 0 or 1, so one byte holds them without loss. The fused LIF kernels mark the
tensors they return (`mark_spikes`); inside `compact_saved_spikes()` autograd's saved-tensor hooks
store marked tensors (and views of them) as uint8 and give backward float copies back on demand.
Nothing else is touched: unmarked tensors are saved as they are.
"""

from __future__ import annotations

import contextlib

import torch

_MARK = "_suite_spikes"
MIN_ELEMENTS = 1 << 16  # below this, conversions cost more than the bytes they save


def mark_spikes(t: torch.Tensor) -> torch.Tensor:
    setattr(t, _MARK, True)
    return t


def is_marked(t: torch.Tensor) -> bool:
    return getattr(t, _MARK, False) or (t._base is not None and getattr(t._base, _MARK, False))


def _pack(t: torch.Tensor):
    if t.numel() >= MIN_ELEMENTS and t.is_floating_point() and is_marked(t):
        return ("spikes", t.dtype, t.to(torch.uint8))  # keeps t's strides (preserve_format)
    return t


def _unpack(packed):
    if isinstance(packed, tuple):
        _, dtype, compact = packed
        return compact.to(dtype)
    return packed


@contextlib.contextmanager
def compact_saved_spikes(enabled: bool = True):
    """Within this block, spikes saved for backward are stored as uint8."""
    if not enabled or not torch.is_grad_enabled():
        yield
        return
    with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
        yield
