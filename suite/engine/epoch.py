"""One training epoch on one worker: mixup/cutmix (timm), AMP, AdamW step, the timm LR schedule."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from suite.engine.evaluate import autocast_context
from suite.engine.crash_injection import CrashPlan
from suite.engine.mixing import BatchMixer
from suite.engine.progress import EpochProgress
from suite.engine.schedule import after_update, set_position

FIGURES_EVERY = 5  # refresh the bar's figures every N steps (each refresh costs a .item() sync)


@dataclass
class TrainStats:
    loss_sum: float
    correct: int  # argmax of the logits equals the dominant class of the (mixed) target
    samples: int
    seconds: float


def train_one_epoch(
    model: torch.nn.Module,
    loader,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    mixer: BatchMixer,
    device: torch.device,
    amp: str,
    epoch: int,
    epochs: int,
    rank: int,
    world_size: int,
    crash_plan: CrashPlan | None = None,
    progress_bar: bool = False,
) -> TrainStats:
    model.train()
    set_position(scheduler, epoch, len(loader))
    mixer.set_epoch(epoch)
    bar = EpochProgress(len(loader), f"epoch {epoch + 1}/{epochs}", enabled=progress_bar)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    samples = 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if crash_plan is not None:
            crash_plan.maybe_crash(epoch, rank, step)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True).long()
        x, targets = mixer(x, y)  # soft targets, label smoothing included (timm's Mixup)
        with autocast_context(amp, device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        after_update(scheduler, epoch, step, len(loader))

        loss_sum += loss.detach().double() * y.numel()
        correct += (logits.detach().argmax(1) == targets.argmax(1)).sum()
        samples += y.numel()
        bar.update()
        if step % FIGURES_EVERY == 0 or step == len(loader) - 1:
            elapsed = time.perf_counter() - start
            bar.show(
                loss=f"{loss_sum.item() / samples:.4f}",
                acc=f"{100.0 * correct.item() / samples:.1f}%",
                samples_s=f"{samples * world_size / max(elapsed, 1e-9):.1f}",
            )
    bar.close()
    return TrainStats(
        loss_sum=float(loss_sum.item()),
        correct=int(correct.item()),
        samples=samples,
        seconds=time.perf_counter() - start,
    )
