"""The model, batch and step function that one benchmark worker times.

Both implementations get the same synthetic batch (fixed seed), the same T, batch size, threads
and autocast setting, and train with the same loss and optimizer; only the model code differs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from suite.bench.spec import BenchSpec
from suite.errors import UsageError


@dataclass
class Workload:
    model: torch.nn.Module
    step: Callable[[], None]
    details: dict


def suite_config(spec: BenchSpec):
    """The SpikformerConfig that `spec` benchmarks (task shapes, classes and T)."""
    from suite.models.registry import spikformer_config
    from suite.task_registry import get_task

    task = get_task(spec.task)
    return spikformer_config(spec.model, **task.model_kwargs(spec.time_steps)), task


def synthetic_batch(spec: BenchSpec) -> tuple[torch.Tensor, torch.Tensor]:
    cfg, task = suite_config(spec)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(spec.batch_size, *task.sample_shape(cfg.time_steps), generator=generator)
    y = torch.randint(0, cfg.num_classes, (spec.batch_size,), generator=generator)
    return x, y


def autocast(spec: BenchSpec):
    if spec.amp == "bf16":
        return torch.autocast(spec.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_suite_model(spec: BenchSpec) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], dict]:
    from suite.models import Spikformer

    cfg, _ = suite_config(spec)
    model = Spikformer(cfg)
    details = {"lif_backend": cfg.lif_backend}
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if spec.mode == "infer" and spec.fold_bn:
        from suite.models.fold import fold_batchnorm

        model = fold_batchnorm(model, inplace=True)
        details["folded_batchnorms"] = model.folded_batchnorms
    return model, model, details


def build_spikingjelly_model(spec: BenchSpec) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], dict]:
    """spikingjelly 2.0's own Spikformer with the same depth, width, heads, stem and input.

    For spikformer-4-384 on CIFAR this is exactly `spikformer_cifar10(T=4)`. Its stem choice is
    its `patch_size`: 4 pools the last two stages (our cifar stem), 16 pools all four (imagenet, dvs).
    """
    try:
        from spikingjelly.activation_based import functional
        from spikingjelly.activation_based.model.spikformer import Spikformer as PeerSpikformer
    except ImportError as err:
        raise UsageError(f"--compare spikingjelly needs spikingjelly >= 2.0 installed ({err})") from err

    cfg, _ = suite_config(spec)
    model = PeerSpikformer(
        T=cfg.time_steps, in_channels=cfg.in_channels, img_size_h=cfg.img_size[0], img_size_w=cfg.img_size[1],
        patch_size=4 if cfg.stem == "cifar" else 16, num_classes=cfg.num_classes, embed_dims=cfg.dim,
        num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, depths=cfg.depth,
    )

    def forward(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(model)  # its neurons keep state between calls
        if x.dim() == 5:  # [B, T, C, H, W] -> its time-major [T, B, C, H, W]
            x = x.transpose(0, 1)
        return model(x).mean(0)  # its head gives [T, B, classes]; average over time as ours does

    return model, forward, {}


def build_workload(spec: BenchSpec) -> Workload:
    builder = build_suite_model if spec.impl == "suite" else build_spikingjelly_model
    model, forward, details = builder(spec)
    model.to(spec.device)
    x, y = (t.to(spec.device) for t in synthetic_batch(spec))

    if spec.mode == "infer":
        model.eval()

        def step() -> None:
            with torch.inference_mode(), autocast(spec):
                forward(x)

        return Workload(model, step, details)

    model.train()
    # fused=True: one kernel for all parameters instead of ~10 small ops per tensor; same for both
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.06, fused=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(spec):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()

    return Workload(model, step, details)
