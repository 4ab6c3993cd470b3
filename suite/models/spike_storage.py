"""Keep spike tensors saved for backward as uint8 instead of float (4x less activation memory).

Every conv, linear and max-pool after a LIF saves its input, the spikes, for its own backward.
Spikes are exactly 0 or 1, so one byte holds them without loss. The fused LIF kernels mark the
tensors they return (`mark_spikes`); inside `compact_saved_spikes()` autograd's saved-tensor hooks
store marked tensors (and views of them) as uint8 and give backward float copies back on demand.
Nothing else is touched: unmarked tensors are saved as they are.

The native CPU kernels write the uint8 copy in the same pass as the spikes (`compact=`), which
saves the hook a conversion pass; the copy is used only while the spikes are unmodified.
"""

from __future__ import annotations

import contextlib
import threading

import torch

_MARK = "_suite_spikes"
_COMPACT = "_suite_spikes_uint8"  # (uint8 twin with the same strides, the spikes' version then)
MIN_ELEMENTS = 1 << 16  # below this, conversions cost more than the bytes they save
_active = threading.local()


def mark_spikes(t: torch.Tensor, compact: torch.Tensor | None = None) -> torch.Tensor:
    setattr(t, _MARK, True)
    if compact is not None:
        if compact.shape != t.shape or compact.stride() != t.stride():
            raise ValueError(f"uint8 twin {tuple(compact.shape)}/{compact.stride()} does not match {tuple(t.shape)}/{t.stride()}")
        setattr(t, _COMPACT, (compact, t._version))
    return t


def is_marked(t: torch.Tensor) -> bool:
    return getattr(t, _MARK, False) or (t._base is not None and getattr(t._base, _MARK, False))


def compaction_active() -> bool:
    """True inside `compact_saved_spikes()` with grad enabled: a uint8 twin would be used."""
    return getattr(_active, "depth", 0) > 0


def wants_compact(t: torch.Tensor) -> bool:
    return compaction_active() and t.numel() >= MIN_ELEMENTS


def _twin_view(t: torch.Tensor) -> torch.Tensor | None:
    """The uint8 twin seen through the same view as t, if t's spikes came with one unmodified."""
    for source in (t, t._base):
        entry = getattr(source, _COMPACT, None) if source is not None else None
        if entry is None:
            continue
        compact, version = entry
        if version != source._version or t.untyped_storage().data_ptr() != source.untyped_storage().data_ptr():
            return None
        offset = t.storage_offset() - source.storage_offset() + compact.storage_offset()
        return compact.as_strided(t.shape, t.stride(), offset)
    return None


def _pack(t: torch.Tensor):
    if t.numel() >= MIN_ELEMENTS and t.is_floating_point() and is_marked(t):
        compact = _twin_view(t)
        return ("spikes", t.dtype, compact if compact is not None else t.to(torch.uint8))  # keeps t's strides
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
    _active.depth = getattr(_active, "depth", 0) + 1
    try:
        with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
            yield
    finally:
        _active.depth -= 1
