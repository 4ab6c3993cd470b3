"""Spikformer (Zhou et al., ICLR 2023): spiking patch splitting + spiking self-attention.

Faithful to the official code (ZK-Zhou/spikformer) in structure, parameters and outputs, with one
layout for all stems: activations flow as [T, B, ...] and token tensors as [T, B, N, D], so every
Linear acts on the last dimension and every BatchNorm1d sees [T*B*N, D] without transposes.
Official checkpoints load through `suite.models.official`.

Each block's forward reads as its definition, e.g. `lif(bn(linear(x)))`; a `FusedBlock` first
offers its inputs to the fused kernels (suite.models.kernels.fused_bn_lif), which compute the same
spikes in one pass where they apply (see suite.models.fast_paths for the switches).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from suite.models import fast_paths
from suite.models.fast_paths import FusedBlock
from suite.models.kernels import fused_bn_lif
from suite.models.kernels.dispatch import check_backend
from suite.models.neuron import LIF
from suite.models.spike_pool import SpikeMaxPool2d
from suite.models.spike_storage import compact_saved_spikes

STEM_POOLS = {  # which of the four SPS stages end with a max-pool
    "cifar": (False, False, True, True),  # 32x32 -> 8x8
    "imagenet": (True, True, True, True),  # 224x224 -> 14x14
    "dvs": (True, True, True, True),  # 128x128 -> 8x8
}
HEAD_DIM = {"cifar": 32, "imagenet": 64, "dvs": 16}  # the paper's per-head width for each stem


@dataclass(frozen=True)
class SpikformerConfig:
    depth: int
    dim: int
    heads: int
    num_classes: int = 10
    stem: str = "cifar"
    in_channels: int = 3
    img_size: tuple[int, int] = (32, 32)
    time_steps: int = 4
    mlp_ratio: float = 4.0
    attn_scale: float = 0.125
    qkv_bias: bool = True  # the official cifar code has q/k/v biases; imagenet/dvs do not
    attn_threshold: float = 0.5
    lif_backend: str = "auto"

    def __post_init__(self) -> None:
        check_config(self)

    def to_dict(self) -> dict:
        return asdict(self)


def check_config(cfg: SpikformerConfig) -> None:
    """Every option is checked when the config is made, so a bad one never reaches a forward pass.

    Names get UnknownNameError listing the valid ones; numbers get UsageError saying what fits.
    """
    from suite.errors import UnknownNameError, UsageError

    if cfg.stem not in STEM_POOLS:
        raise UnknownNameError(f"unknown stem {cfg.stem!r}; valid stems: {', '.join(STEM_POOLS)}")
    check_backend(cfg.lif_backend)
    positive = {"depth": cfg.depth, "dim": cfg.dim, "heads": cfg.heads, "num_classes": cfg.num_classes,
                "in_channels": cfg.in_channels, "time_steps": cfg.time_steps}
    for name, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"model option {name} must be a positive integer, got {value!r}")
    if cfg.dim % 8:
        raise UsageError(f"model option dim {cfg.dim} must be a multiple of 8 (e.g. {max(8, cfg.dim // 8 * 8)})")
    if cfg.dim % cfg.heads:
        divisors = [str(h) for h in range(1, cfg.dim + 1) if cfg.dim % h == 0]
        raise UsageError(
            f"model option heads {cfg.heads} does not divide dim {cfg.dim}; valid head counts: {', '.join(divisors)}"
        )
    if len(cfg.img_size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in cfg.img_size):
        raise UsageError(f"model option img_size must be two positive integers (H, W), got {cfg.img_size!r}")
    for name in ("mlp_ratio", "attn_scale", "attn_threshold"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise UsageError(f"model option {name} must be a positive number, got {value!r}")


class ConvBNLIF(FusedBlock):
    """conv3x3 (no bias) -> BN -> LIF [-> max-pool of the spikes]."""

    def __init__(self, c_in: int, c_out: int, pool: bool, backend: str):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.lif = LIF(backend=backend)
        self.pool = SpikeMaxPool2d(kernel_size=3, stride=2, padding=1) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        z = self.conv(x.flatten(0, 1))  # [T*B, C', H, W]
        spikes = fused_bn_lif.conv_bn_lif(self.bn, self.lif, z, T) if self.fused else None
        if spikes is None:
            y = self.bn(z)
            spikes = self.lif(y.view(T, B, *y.shape[1:]))  # [T, B, C', H, W]
        x = self.pool(spikes.flatten(0, 1))  # [T*B, C', H', W']
        return x.view(T, B, *x.shape[1:])


class SPS(nn.Module):
    """Spiking patch splitting: four ConvBNLIF stages (D/8, D/4, D/2, D channels) + relative
    position embedding (a ConvBNLIF whose spikes are added to its input: values 0/1/2)."""

    def __init__(self, in_channels: int, dim: int, stem: str, backend: str):
        super().__init__()
        widths = (in_channels, dim // 8, dim // 4, dim // 2, dim)
        self.stages = nn.ModuleList(
            ConvBNLIF(widths[i], widths[i + 1], pool, backend) for i, pool in enumerate(STEM_POOLS[stem])
        )
        self.rpe = ConvBNLIF(dim, dim, pool=False, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)  # [T, B, C, H, W] -> [T, B, C', H', W']
        x = x + self.rpe(x)  # [T, B, D, h, w]
        return x.flatten(3).transpose(2, 3)  # [T, B, N, D]


class LinearBNLIF(FusedBlock):
    """Linear -> BatchNorm1d over the feature dim -> LIF, on tokens [T, B, N, D]."""

    def __init__(self, d_in: int, d_out: int, bias: bool, backend: str, v_threshold: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias)
        self.bn = nn.BatchNorm1d(d_out)
        self.lif = LIF(v_threshold=v_threshold, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = fused_bn_lif.linear_bn_lif(self.linear, self.bn, self.lif, x) if self.fused else None
        if spikes is None:
            z = self.linear(x)
            spikes = self.lif(self.bn(z.flatten(0, -2)).view(z.shape))  # BN over D_out of [T, B, N, D_out]
        return spikes


class AttentionProduct(nn.Module):
    """Q K^T V * scale on spike tensors [T, B, heads, N, d], without softmax.

    The association order is chosen per shape: Q (K^T V) costs N*d*d MACs per head, (Q K^T) V
    costs N*N*d; both give identical results (integer sums of 0/1 products are exact in fp32).
    A module of its own so that metric hooks can count its synaptic operations.
    """

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n, d = q.shape[-2], q.shape[-1]
        if n > d:
            out = q @ (k.transpose(-2, -1) @ v)  # [.., N, d] @ [.., d, d]
        else:
            out = (q @ k.transpose(-2, -1)) @ v  # [.., N, N] @ [.., N, d]
        return out * self.scale


class SSA(nn.Module):
    """Spiking self-attention: Q, K, V spikes -> Q K^T V * s -> LIF(0.5) -> Linear -> BN -> LIF."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q = LinearBNLIF(cfg.dim, cfg.dim, cfg.qkv_bias, cfg.lif_backend)
        self.k = LinearBNLIF(cfg.dim, cfg.dim, cfg.qkv_bias, cfg.lif_backend)
        self.v = LinearBNLIF(cfg.dim, cfg.dim, cfg.qkv_bias, cfg.lif_backend)
        self.product = AttentionProduct(cfg.attn_scale)
        self.attn_lif = LIF(v_threshold=cfg.attn_threshold, backend=cfg.lif_backend)
        self.proj = LinearBNLIF(cfg.dim, cfg.dim, True, cfg.lif_backend)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        return x.view(T, B, N, self.heads, D // self.heads).transpose(2, 3)  # [T, B, h, N, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        q, k, v = (self.split_heads(f(x)) for f in (self.q, self.k, self.v))
        y = self.product(q, k, v).transpose(2, 3).reshape(T, B, N, D)  # heads merged back
        return self.proj(self.attn_lif(y))


class MLP(nn.Module):
    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.fc1 = LinearBNLIF(cfg.dim, hidden, True, cfg.lif_backend)
        self.fc2 = LinearBNLIF(hidden, cfg.dim, True, cfg.lif_backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class Block(nn.Module):
    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.attn = SSA(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(nn.Module):
    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.config = cfg  # checked when it was made (SpikformerConfig.__post_init__)
        self.stem = SPS(cfg.in_channels, cfg.dim, cfg.stem, cfg.lif_backend)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The official cifar model uses nn.Linear (trunc-normal init); imagenet/dvs use 1x1 convs
        # whose default init equals nn.Linear's default, so only their head is trunc-normal.
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        if self.config.stem != "cifar":
            linears = [self.head]
        for m in linears:
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # [B, C, H, W] static: the same image at every time step
            return x.unsqueeze(0).expand(self.config.time_steps, *x.shape)
        if x.dim() == 5:  # [B, T, C, H, W] sequence
            return x.transpose(0, 1)
        raise ValueError(f"expected input [B, C, H, W] or [B, T, C, H, W], got shape {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.to_time_major(x))  # [T, B, N, D]
        for block in self.blocks:
            x = block(x)
        return x.mean(2).mean(0)  # [B, D]: mean over tokens, then over time

    def set_lif_backend(self, name: str) -> None:
        """Every LIF layer runs backend `name` from now on; the config records it."""
        fast_paths.set_lif_backend(self, name)
        self.config = replace(self.config, lif_backend=name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with compact_saved_spikes(self.training):  # spikes kept for backward as uint8, not float
            return self.head(self.forward_features(x))  # [B, classes]
