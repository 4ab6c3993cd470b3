"""A checkpoint file exactly as the official ZK-Zhou/spikformer train.py writes it (timm's CheckpointSaver),
for the tiny spikformer-1-32."""

from __future__ import annotations

import argparse

import torch

from tests.helpers.official_reference import official_state_dict

OFFICIAL_YML = {  # ZK-Zhou/spikformer cifar10/cifar10.yml, with the tiny model's architecture
    "epochs": 300, "time_step": 2, "layer": 1, "dim": 32, "num_heads": 1, "patch_size": 4, "mlp_ratio": 4,
    "data_dir": "/data/cifar-10-python/", "dataset": "torch/cifar10", "num_classes": 10, "img_size": 32,
    "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616], "crop_pct": 1.0, "scale": [1.0, 1.0],
    "ratio": [1.0, 1.0], "color_jitter": 0.0, "interpolation": "bicubic", "train_interpolation": "bicubic",
    "aa": "rand-m9-n1-mstd0.4-inc1", "mixup": 0.5, "mixup_off_epoch": 200, "mixup_prob": 1.0, "mixup_mode": "batch",
    "mixup_switch_prob": 0.5, "cutmix": 0.0, "reprob": 0.25, "remode": "const", "amp": True, "batch_size": 128,
    "val_batch_size": 128, "lr": 5e-4, "min_lr": 1e-5, "sched": "cosine", "weight_decay": 6e-2, "cooldown_epochs": 10,
    "warmup_epochs": 20, "warmup_lr": 0.00001, "opt": "adamw", "smoothing": 0.1, "workers": 16,
}



def write_official_checkpoint(path, **arg_changes) -> dict:
    """A checkpoint as the official train.py's timm CheckpointSaver writes it, for spikformer-1-32."""
    weights = official_state_dict("cifar10", depth=1, dim=32, in_channels=3, num_classes=10, seed=5)
    params = [torch.nn.Parameter(w.clone().float()) for w in weights.values() if w.is_floating_point()]
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    torch.save(
        {
            "epoch": 299, "arch": "spikformer", "version": 2, "metric": 95.19,
            "state_dict": {f"module.{k}": v for k, v in weights.items()},  # saved from DDP
            "optimizer": optimizer.state_dict(),
            "args": argparse.Namespace(**{**OFFICIAL_YML, **arg_changes}),
        },
        path,
    )
    return weights
