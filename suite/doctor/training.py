"""A few mixed-precision training steps on one fixed batch: the loss must stay finite and fall.

fp16 runs with dynamic loss scaling (torch.amp.GradScaler), bf16 without (its range is fp32's).
The batch holds one noisy prototype image per class, so any working model and optimizer fit it
within a few steps; a loss that does not fall means broken gradients, not a hard problem.
"""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F

PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16}


def fixed_batch(batch_size: int, classes: int, img_size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(classes, 3, img_size, img_size, generator=generator) * 3
    labels = torch.arange(batch_size) % classes
    images = (prototypes[labels] + 0.3 * torch.randn(batch_size, 3, img_size, img_size, generator=generator)).clamp(min=0)
    return images, labels


def training_check(
    model_name: str, precision: str, device: str, steps: int = 20, batch_size: int = 32, classes: int = 10,
    img_size: int = 32, time_steps: int = 4, lr: float = 1e-3, seed: int = 0,
) -> dict:
    """`steps` AdamW steps of `model_name` on one fixed batch of CIFAR-shaped images under
    autocast(`precision`) on `device`; the losses and the verdict, JSON-ready."""
    from suite.models import create_model

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {tuple(PRECISIONS)}")
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=classes, img_size=img_size, time_steps=time_steps).to(device).train()
    images, labels = (t.to(device) for t in fixed_batch(batch_size, classes, img_size, seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    losses, skipped = [], 0
    for _ in range(steps):
        with torch.autocast(device, dtype=PRECISIONS[precision]):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.step(optimizer)
        scaler.update()
        skipped += scaler.is_enabled() and scaler.get_scale() < scale  # inf/nan gradients: step skipped
        losses.append(loss.item())
    finite = all(math.isfinite(v) for v in losses)
    window = max(1, min(5, steps // 4))
    falling = finite and statistics.mean(losses[-window:]) < statistics.mean(losses[:window])
    return {
        "model": model_name, "precision": precision, "device": device, "steps": steps, "batch_size": batch_size,
        "losses": losses, "finite": finite, "falling": falling, "skipped_steps": int(skipped),
        "final_loss_scale": scaler.get_scale() if scaler.is_enabled() else None,
        "ok": finite and falling,
    }
