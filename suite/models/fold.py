"""Fold inference-mode BatchNorm into the convolution or linear map that precedes it.

In eval mode BatchNorm is the affine map y = (z - mean) * gamma / sqrt(var + eps) + beta, applied
per output channel of the preceding conv/linear z = W x + b. Scaling W's output rows by
s = gamma / sqrt(var + eps) and setting b' = (b - mean) * s + beta gives the same y in one layer,
so inference skips a full pass over every activation. Results equal the unfolded model up to
floating-point rounding (computed here in float64, then cast back). Training needs batch
statistics, so folding is for inference only; the source model is left untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# (preceding layer attribute, BatchNorm attribute) pairs as the backbone names them: ConvBNLIF has
# .conv/.bn, LinearBNLIF has .linear/.bn.
FOLDABLE_PAIRS = (("conv", "bn"), ("linear", "bn"))


def folded_weight_and_bias(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of `layer` followed by `bn` (eval mode) as one layer."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it has no running statistics (track_running_stats=False)")
    w = weight.detach().double()
    mean = bn.running_mean.double()
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    b = bias.detach().double() if bias is not None else torch.zeros_like(mean)
    new_weight = w * scale.view(-1, *([1] * (w.dim() - 1)))  # output channels are dim 0
    new_bias = (b - mean) * scale + shift
    return new_weight.to(weight.dtype), new_bias.to(weight.dtype)


def _fold_pair(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    if isinstance(layer, nn.Conv2d | nn.Conv1d):
        folded = type(layer)(
            layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
            padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=True,
            padding_mode=layer.padding_mode,
        )
    elif isinstance(layer, nn.Linear):
        folded = nn.Linear(layer.in_features, layer.out_features, bias=True)
    else:
        raise TypeError(f"cannot fold BatchNorm into {type(layer).__name__}; expected Conv1d, Conv2d or Linear")
    if bn.num_features != folded.weight.shape[0]:
        raise ValueError(f"{bn} has {bn.num_features} features but {layer} has {folded.weight.shape[0]} outputs")
    weight, bias = folded_weight_and_bias(layer.weight, layer.bias, bn)
    with torch.no_grad():
        folded.weight.copy_(weight)
        folded.bias.copy_(bias)
    folded.to(device=layer.weight.device, dtype=layer.weight.dtype)
    if layer.weight.is_contiguous(memory_format=torch.channels_last) and layer.weight.dim() == 4:
        folded.to(memory_format=torch.channels_last)
    return folded.eval()


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An inference copy of `model` (or `model` itself with inplace=True) in which every
    conv/linear + BatchNorm pair named as in FOLDABLE_PAIRS is one layer and the BN an Identity.
    Returns the model in eval mode; counts the folds in `model.folded_batchnorms`."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    folds = 0
    for module in list(model.modules()):
        for layer_name, bn_name in FOLDABLE_PAIRS:
            layer, bn = getattr(module, layer_name, None), getattr(module, bn_name, None)
            if isinstance(layer, nn.Module) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
                setattr(module, layer_name, _fold_pair(layer, bn))
                setattr(module, bn_name, nn.Identity())
                folds += 1
    model.folded_batchnorms = folds
    return model
