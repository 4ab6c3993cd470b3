"""Training-time augmentation of one event-frame sample `[T, 2, H, W]`, as in Spikformer's DVS recipe.

Spikformer's CIFAR10-DVS script flips each sample horizontally with probability 0.5, then applies one
op drawn uniformly from {identity, shear-x, translate-x, translate-y, rotate, cutout} with a random
signed magnitude from 31 levels (its `SNNAugmentWide`, a TrivialAugment variant): shear up to 0.3
rad, translation up to 5 pixels, rotation up to 30 degrees, cutout of a square covering 0.1%-11% of
the image. The same geometry applies to every time step, so motion inside a sample is preserved.
Nearest-neighbour resampling keeps the pixel values event counts. Mixup runs on batches in the
training loop, not here.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as F

OPS = ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout")
MAGNITUDE_LEVELS = 31
MAX_MAGNITUDE = {"shear_x": 0.3, "translate_x": 5.0, "translate_y": 5.0, "rotate": 30.0}
CUTOUT_AREA = (0.001, 0.11)
NEAREST = F.InterpolationMode.NEAREST


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _signed_magnitude(op: str, generator: torch.Generator | None) -> float:
    level = int(torch.randint(MAGNITUDE_LEVELS, (), generator=generator))
    magnitude = -MAX_MAGNITUDE[op] + 2 * MAX_MAGNITUDE[op] * level / (MAGNITUDE_LEVELS - 1)
    return -magnitude if _uniform(generator) < 0.5 else magnitude


def apply_op(frames: torch.Tensor, op: str, magnitude: float = 0.0, generator: torch.Generator | None = None):
    """Apply one named op to all time steps of `frames` ([..., H, W])."""
    if op == "identity":
        return frames
    if op == "shear_x":
        return F.affine(frames, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(magnitude), 0.0],
                        interpolation=NEAREST, fill=0.0)
    if op in ("translate_x", "translate_y"):
        shift = [int(magnitude), 0] if op == "translate_x" else [0, int(magnitude)]
        return F.affine(frames, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                        interpolation=NEAREST, fill=0.0)
    if op == "rotate":
        return F.rotate(frames, magnitude, interpolation=NEAREST, fill=0.0)
    if op == "cutout":
        height, width = frames.shape[-2:]
        area = CUTOUT_AREA[0] + (CUTOUT_AREA[1] - CUTOUT_AREA[0]) * _uniform(generator)
        side = max(1, min(height, width, round(math.sqrt(area * height * width))))
        top = int(torch.randint(height - side + 1, (), generator=generator))
        left = int(torch.randint(width - side + 1, (), generator=generator))
        return F.erase(frames, top, left, side, side, torch.zeros(()))
    raise ValueError(f"unknown augmentation op {op!r}; valid ops: {', '.join(OPS)}")


def augment_event_frames(frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random flip + one random op (see module docstring) on a `[T, 2, H, W]` sample."""
    if _uniform(generator) < 0.5:
        frames = frames.flip(-1)
    op = OPS[int(torch.randint(len(OPS), (), generator=generator))]
    magnitude = _signed_magnitude(op, generator) if op in MAX_MAGNITUDE else 0.0
    return apply_op(frames, op, magnitude, generator)
