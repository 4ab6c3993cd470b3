"""The learning-rate schedule: timm's cosine scheduler, made by timm's own factory.

The official scripts build it with timm's `create_scheduler(args, optimizer)` and step it once per
epoch (`lr_scheduler.step(epoch + 1)` after each epoch, cifar10/train.py:630 and
cifar10dvs/train.py:436): epoch e trains at

    e < W:            warmup_lr + (lr - warmup_lr) * e / W
    W <= e < E - C:   min_lr + (lr - min_lr) * (1 + cos(pi * e / (E - C))) / 2
    e >= E - C:       min_lr   (the cool-down)

with W warm-up epochs, C cool-down epochs and E epochs in all (timm's `--epochs` is E - C, its
`num_epochs` return value E). `sched_on_updates` (timm's train.py option) applies the same
curve per optimizer update instead, with t counted in updates; `warmup_prefix` (timm's too) starts
the cosine after the warm-up, at lr, over the E - C - W epochs left (the NTU recipes use both).

The scheduler is a pure function of the epoch (or update) count, so `set_position` at the start of
every epoch, including the first after a resume, restores it exactly.
"""

from __future__ import annotations

import torch
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    sched: str = "cosine",
    epochs: int,
    cooldown_epochs: int,
    warmup_epochs: int,
    warmup_lr: float,
    min_lr: float,
    steps_per_epoch: int,
    on_updates: bool = False,
    warmup_prefix: bool = False,
) -> Scheduler:
    """timm's scheduler `sched` (the recipes': cosine) for `epochs` epochs in all, the last
    `cooldown_epochs` at min_lr."""
    scheduler, total = create_scheduler_v2(
        optimizer,
        sched=sched,
        num_epochs=epochs - cooldown_epochs - (warmup_epochs if warmup_prefix else 0),
        cooldown_epochs=cooldown_epochs,
        warmup_epochs=warmup_epochs,
        warmup_prefix=warmup_prefix,
        warmup_lr=warmup_lr,
        min_lr=min_lr,
        step_on_epochs=not on_updates,
        updates_per_epoch=steps_per_epoch,
    )
    assert total == epochs, (total, epochs)  # timm counts warm-up inside, cool-down on top
    return scheduler


def set_position(scheduler: Scheduler, epoch: int, steps_per_epoch: int) -> None:
    """Set the LR for the start of `epoch` (whichever of the two counts the scheduler uses)."""
    scheduler.step(epoch)
    scheduler.step_update(epoch * steps_per_epoch)


def after_update(scheduler: Scheduler, epoch: int, step: int, steps_per_epoch: int) -> None:
    """After optimizer update `step` of `epoch` (no-op for a per-epoch scheduler, as in timm)."""
    scheduler.step_update(epoch * steps_per_epoch + step + 1)
