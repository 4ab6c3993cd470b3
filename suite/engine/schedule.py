"""Cosine learning-rate schedule with linear warm-up, stepped once per optimizer step.

Per step rather than per epoch (the paper's timm scheduler steps per epoch): short runs of a few
epochs then still warm up and anneal smoothly. With E epochs of S steps and W warm-up epochs:

    step t < W*S:   lr = warmup_lr + (base_lr - warmup_lr) * t / (W*S)
    step t >= W*S:  lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * (t - W*S) / (E*S - W*S))) / 2

so the first step uses warmup_lr, the last one approaches min_lr. Warm-up longer than the run is
clipped to the whole run minus one step.
"""

from __future__ import annotations

import math

import torch


def cosine_lr(step: int, *, base_lr: float, total_steps: int, warmup_steps: int, warmup_lr: float, min_lr: float) -> float:
    """The learning rate at optimizer step `step` (0-based)."""
    total_steps = max(1, total_steps)
    warmup_steps = min(warmup_steps, total_steps - 1)
    if step < warmup_steps:
        return warmup_lr + (base_lr - warmup_lr) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int,
    warmup_lr: float,
    min_lr: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `cosine_lr`; its state_dict holds the step count, so it resumes exactly."""
    base_lr = optimizer.param_groups[0]["lr"]
    total = epochs * steps_per_epoch
    warmup = warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        lr = cosine_lr(step, base_lr=base_lr, total_steps=total, warmup_steps=warmup, warmup_lr=warmup_lr, min_lr=min_lr)
        return lr / base_lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
