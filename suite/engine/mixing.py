"""Mixup / CutMix on training batches, for static `[B, C, H, W]` and sequence `[B, T, C, H, W]` input.

torchvision's `transforms.v2.MixUp` / `CutMix` do the work; they accept only 4-D batches, so a
sequence batch is viewed as `[B, T*C, H, W]`: the same box / the same mixing weight then applies
to every time step and channel of a sample, and cut boxes lie in the last two (spatial) dims.

`BatchMixer` always returns soft targets `[B, num_classes]` (one-hot when a batch is not mixed),
so one loss function (cross-entropy with label smoothing) serves every batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2


class BatchMixer:
    """Applies mixup or cutmix to a batch with the recipe's probabilities (timm's semantics).

    With probability `prob` a batch is mixed; a mixed batch uses cutmix with probability
    `switch_prob` when both are enabled. Alphas of 0 disable a method.
    """

    def __init__(self, num_classes: int, *, mixup: float, cutmix: float, prob: float, switch_prob: float):
        self.num_classes = num_classes
        self.prob = prob
        self.switch_prob = switch_prob
        self.mixup = v2.MixUp(alpha=mixup, num_classes=num_classes) if mixup > 0 else None
        self.cutmix = v2.CutMix(alpha=cutmix, num_classes=num_classes) if cutmix > 0 else None

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup is not None or self.cutmix is not None)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.enabled or torch.rand(()).item() >= self.prob:
            return x, F.one_hot(y, self.num_classes).to(torch.float32)
        transform = self._choose()
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-2], shape[-1]) if x.dim() > 4 else x
        mixed, targets = transform(flat, y)
        return mixed.reshape(shape), targets.to(torch.float32)

    def _choose(self) -> v2.Transform:
        if self.mixup is None:
            return self.cutmix
        if self.cutmix is None:
            return self.mixup
        return self.cutmix if torch.rand(()).item() < self.switch_prob else self.mixup
