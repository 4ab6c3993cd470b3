"""An independent, functional re-statement of the official Spikformer forward pass, for tests.

Written from reading ZK-Zhou/spikformer's cifar10, imagenet and cifar10dvs model.py: it consumes a
state_dict with the *official* key names and shapes, follows each flavour's own tensor layout and
operation order (BatchNorm1d on transposed tokens for cifar10, Conv1d/Conv2d 1x1 for the others,
(QK^T)V vs Q(K^TV)), and uses spikingjelly 2.0's LIFNode for every neuron. BatchNorm runs in eval
mode. Tests compare the suite's model against it after `load_official_state_dict`;
`recording_firing_rates()` collects each neuron layer's firing rate, so a test can check that the
comparison is not between two silent networks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import neuron, surrogate

FLAVOURS = ("cifar10", "imagenet", "cifar10dvs")
_firing_rates: list[list[float]] = []  # the lists of the open `recording_firing_rates()` blocks


@contextmanager
def recording_firing_rates() -> Iterator[list[float]]:
    """Inside the block, every LIF layer call appends its output's mean (spikes per neuron and step)."""
    rates: list[float] = []
    _firing_rates.append(rates)
    try:
        yield rates
    finally:
        _firing_rates.remove(rates)


def lif(x: torch.Tensor, v_threshold: float = 1.0) -> torch.Tensor:
    node = neuron.LIFNode(
        tau=2.0, v_threshold=v_threshold, detach_reset=True, step_mode="m", surrogate_function=surrogate.Sigmoid(alpha=4.0)
    )
    spikes = node(x)  # a fresh node per call: no state carried between calls
    for rates in _firing_rates:
        rates.append(spikes.mean().item())
    return spikes


def bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(
        x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"],
        training=False, eps=1e-5,
    )


def official_state_dict(flavour: str, depth: int, dim: int, in_channels: int, num_classes: int, seed: int = 0):
    """Random weights (and BN statistics) under the official key names and shapes of `flavour`."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def rand(*shape, scale=0.5):
        return torch.randn(*shape, generator=g) * scale

    def add_bn(prefix, c):
        sd[f"{prefix}.weight"] = 1.0 + rand(c, scale=0.2)
        sd[f"{prefix}.bias"] = rand(c, scale=0.3)
        sd[f"{prefix}.running_mean"] = rand(c, scale=0.3)
        sd[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
    for i, suffix in enumerate(["", "1", "2", "3"]):
        sd[f"patch_embed.proj_conv{suffix}.weight"] = rand(widths[i + 1], widths[i], 3, 3, scale=1.0 / (widths[i] ** 0.5))
        add_bn(f"patch_embed.proj_bn{suffix}", widths[i + 1])
    sd["patch_embed.rpe_conv.weight"] = rand(dim, dim, 3, 3, scale=1.0 / dim**0.5)
    add_bn("patch_embed.rpe_bn", dim)

    def linear(prefix, c_out, c_in, bias, kind):
        shape = {"linear": (c_out, c_in), "conv1d": (c_out, c_in, 1), "conv2d": (c_out, c_in, 1, 1)}[kind]
        sd[f"{prefix}.weight"] = rand(*shape, scale=2.0 / c_in**0.5)
        if bias:
            sd[f"{prefix}.bias"] = rand(c_out, scale=0.2)

    hidden = 4 * dim
    for b in range(depth):
        p = f"block.{b}"
        for name in ("q", "k", "v"):
            if flavour == "cifar10":
                linear(f"{p}.attn.{name}_linear", dim, dim, True, "linear")
            else:
                linear(f"{p}.attn.{name}_conv", dim, dim, False, "conv1d")
            add_bn(f"{p}.attn.{name}_bn", dim)
        if flavour == "cifar10":
            linear(f"{p}.attn.proj_linear", dim, dim, True, "linear")
            linear(f"{p}.mlp.fc1_linear", hidden, dim, True, "linear")
            linear(f"{p}.mlp.fc2_linear", dim, hidden, True, "linear")
        else:
            mlp_kind = "conv2d" if flavour == "imagenet" else "conv1d"
            linear(f"{p}.attn.proj_conv", dim, dim, True, "conv1d")
            linear(f"{p}.mlp.fc1_conv", hidden, dim, True, mlp_kind)
            linear(f"{p}.mlp.fc2_conv", dim, hidden, True, mlp_kind)
        add_bn(f"{p}.attn.proj_bn", dim)
        add_bn(f"{p}.mlp.fc1_bn", hidden)
        add_bn(f"{p}.mlp.fc2_bn", dim)
        for norm in ("norm1", "norm2"):  # present in the official model, unused by its forward
            sd[f"{p}.{norm}.weight"] = torch.ones(dim)
            sd[f"{p}.{norm}.bias"] = torch.zeros(dim)
    if flavour == "cifar10dvs":
        sd["pos_embed"] = rand(1, 64, dim)
        sd["norm.weight"] = torch.ones(dim)
        sd["norm.bias"] = torch.zeros(dim)
    sd["head.weight"] = rand(num_classes, dim, scale=1.0 / dim**0.5)
    sd["head.bias"] = rand(num_classes, scale=0.1)
    return sd


def sps(x: torch.Tensor, sd: dict, flavour: str) -> torch.Tensor:
    """x: [T, B, C, H, W] -> spikes [T, B, D, h, w] (before token flattening)."""
    T, B = x.shape[:2]
    pools = (False, False, True, True) if flavour == "cifar10" else (True, True, True, True)
    for suffix, pool in zip(["", "1", "2", "3"], pools):
        y = F.conv2d(x.flatten(0, 1), sd[f"patch_embed.proj_conv{suffix}.weight"], padding=1)
        y = bn(y, sd, f"patch_embed.proj_bn{suffix}")
        y = lif(y.reshape(T, B, *y.shape[1:])).flatten(0, 1)
        if pool:
            y = F.max_pool2d(y, kernel_size=3, stride=2, padding=1)
        x = y.reshape(T, B, *y.shape[1:])
    y = bn(F.conv2d(x.flatten(0, 1), sd["patch_embed.rpe_conv.weight"], padding=1), sd, "patch_embed.rpe_bn")
    return lif(y.reshape(x.shape)) + x


def _conv1d(x, sd, prefix):  # x: [TB, C, N]
    return F.conv1d(x, sd[f"{prefix}.weight"].reshape(*sd[f"{prefix}.weight"].shape[:2], 1), sd.get(f"{prefix}.bias"))


def block_tokens_last(x: torch.Tensor, sd: dict, p: str, heads: int, scale: float) -> torch.Tensor:
    """The cifar10 flavour: tokens [T, B, N, C], nn.Linear, BN1d on transposed tokens, (QK^T)V."""
    T, B, N, C = x.shape

    def linear_bn_lif(inp, name, c_out, v_th=1.0):
        y = F.linear(inp.flatten(0, 1), sd[f"{name}_linear.weight"], sd[f"{name}_linear.bias"])
        y = bn(y.transpose(-1, -2), sd, f"{name}_bn").transpose(-1, -2)
        return lif(y.reshape(T, B, N, c_out), v_th)

    q, k, v = (
        linear_bn_lif(x, f"{p}.attn.{n}", C).reshape(T, B, N, heads, C // heads).permute(0, 1, 3, 2, 4)
        for n in ("q", "k", "v")
    )
    attn = (q @ k.transpose(-2, -1)) * scale
    y = (attn @ v).transpose(2, 3).reshape(T, B, N, C)
    y = lif(y, 0.5)
    x = x + linear_bn_lif(y, f"{p}.attn.proj", C)
    return x + linear_bn_lif(linear_bn_lif(x, f"{p}.mlp.fc1", 4 * C), f"{p}.mlp.fc2", C)


def block_channels_first(x: torch.Tensor, sd: dict, p: str, heads: int, scale: float, flavour: str) -> torch.Tensor:
    """imagenet / cifar10dvs flavours: [T, B, C, N] with 1x1 convolutions."""
    T, B, C, N = x.shape

    def conv_bn_lif(inp, name, c_out, v_th=1.0):
        y = bn(_conv1d(inp.flatten(0, 1), sd, f"{name}_conv"), sd, f"{name}_bn")
        return lif(y.reshape(T, B, c_out, N), v_th)

    q, k, v = (
        conv_bn_lif(x, f"{p}.attn.{n}", C).transpose(-1, -2).reshape(T, B, N, heads, C // heads).permute(0, 1, 3, 2, 4)
        for n in ("q", "k", "v")
    )
    if flavour == "imagenet":
        y = (q @ (k.transpose(-2, -1) @ v)) * scale
    else:
        y = ((q @ k.transpose(-2, -1)) @ v) * scale
    y = lif(y.transpose(3, 4).reshape(T, B, C, N), 0.5)
    x = x + conv_bn_lif(y, f"{p}.attn.proj", C)
    return x + conv_bn_lif(conv_bn_lif(x, f"{p}.mlp.fc1", 4 * C), f"{p}.mlp.fc2", C)


@torch.no_grad()
def official_forward(x: torch.Tensor, sd: dict, flavour: str, depth: int, heads: int, scale: float, T: int):
    """x: [B, C, H, W] (cifar10/imagenet: repeated over T) or [B, T, C, H, W] (cifar10dvs)."""
    x = x.permute(1, 0, 2, 3, 4) if flavour == "cifar10dvs" else x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    feat = sps(x, sd, flavour)  # [T, B, D, h, w]
    if flavour == "cifar10":
        tokens = feat.flatten(-2).transpose(-1, -2)  # [T, B, N, D]
        for b in range(depth):
            tokens = block_tokens_last(tokens, sd, f"block.{b}", heads, scale)
        pooled = tokens.mean(2)
    else:
        tokens = feat.flatten(-2)  # [T, B, D, N]
        for b in range(depth):
            tokens = block_channels_first(tokens, sd, f"block.{b}", heads, scale, flavour)
        pooled = tokens.mean(3)
    return F.linear(pooled.mean(0), sd["head.weight"], sd["head.bias"])
