"""The public switches of the models' fast paths; nothing else turns them on or off.

- Which kernels a LIF layer runs is chosen when the layer is built (`lif_backend`, resolved by
  suite.models.kernels.dispatch); `set_lif_backend(model, name)` switches every LIF layer of a
  model at once, resolving the name there and then.
- A `FusedBlock` (Conv -> BN -> LIF, Linear -> BN -> LIF) computes its spikes in one fused pass
  where the kernels allow it, without calling its submodules, so forward hooks on those modules
  see nothing then. Its `fused` attribute, True when built, allows that path; `with unfused(model):`
  makes every block call its modules one by one (same outputs; in training BatchNorm may round
  its statistics differently in the last bit). The metric monitors (suite.metrics) count inside it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from suite.models.kernels.dispatch import check_backend
from suite.models.neuron import LIF


class FusedBlock(nn.Module):
    """A block whose forward may take a fused path instead of calling its modules (see above)."""

    def __init__(self) -> None:
        super().__init__()
        self.fused = True


@contextlib.contextmanager
def unfused(model: nn.Module) -> Iterator[nn.Module]:
    """Within this block every FusedBlock of `model` calls its modules (hooks see each call);
    afterwards each block's `fused` is what it was."""
    blocks = [m for m in model.modules() if isinstance(m, FusedBlock)]
    before = [block.fused for block in blocks]
    for block in blocks:
        block.fused = False
    try:
        yield model
    finally:
        for block, fused in zip(blocks, before):
            block.fused = fused


def set_lif_backend(model: nn.Module, name: str) -> None:
    """Every LIF layer of `model` runs backend `name` from now on (checked before any changes)."""
    check_backend(name)
    for module in model.modules():
        if isinstance(module, LIF):
            module.set_backend(name)
