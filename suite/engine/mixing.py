"""Mixup / CutMix with timm's `Mixup`, as the official code uses it, for static and sequence batches.

The official scripts build `timm.data.Mixup(mixup_alpha, cutmix_alpha, prob, switch_prob, mode,
label_smoothing, num_classes)` and switch it off from `mixup_off_epoch` on by setting
`mixup_enabled = False` (cifar10/train.py:653-657; cifar10dvs/train.py:426-427 hard-codes 75).
Switched off (or never on), it still returns the label-smoothed one-hot targets, so one soft-target
cross-entropy serves every batch, as the official SoftTargetCrossEntropy does.

timm's cutmix boxes index dims 2 and 3, so a sequence batch `[B, T, C, H, W]` is viewed as
`[B, T*C, H, W]`: the same box and the same mixing weight then apply to every time step and
channel of a sample, and boxes lie in the spatial dims.
"""

from __future__ import annotations

import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target


class BatchMixer:
    """timm's Mixup with the recipe's settings; `set_epoch` applies the mixup-off epoch."""

    def __init__(
        self,
        num_classes: int,
        *,
        mixup: float,
        cutmix: float,
        prob: float,
        switch_prob: float,
        mode: str,
        label_smoothing: float,
        off_epoch: int,
    ):
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.off_epoch = off_epoch
        self.mixup = None
        if (mixup > 0 or cutmix > 0) and prob > 0:
            self.mixup = Mixup(
                mixup_alpha=mixup, cutmix_alpha=cutmix, prob=prob, switch_prob=switch_prob, mode=mode,
                label_smoothing=label_smoothing, num_classes=num_classes,
            )

    @property
    def enabled(self) -> bool:
        return self.mixup is not None and self.mixup.mixup_enabled

    def set_epoch(self, epoch: int) -> None:
        """Mixing on before `off_epoch`, off from it on (0: never off); resumable at any epoch."""
        if self.mixup is not None:
            self.mixup.mixup_enabled = not (self.off_epoch and epoch >= self.off_epoch)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed batch, soft targets [B, num_classes], label smoothing included)."""
        if self.mixup is None:
            return x, mixup_target(y, self.num_classes, lam=1.0, smoothing=self.label_smoothing)
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-2], shape[-1]) if x.dim() > 4 else x
        mixed, targets = self.mixup(flat, y)
        return mixed.reshape(shape), targets.to(torch.float32)
