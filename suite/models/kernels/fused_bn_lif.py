"""Training-mode BatchNorm + multi-step LIF as one autograd function, and the fused paths of the
Conv -> BN -> LIF and Linear -> BN -> LIF blocks built on it (used with the fused LIF backend).

Unfused, BatchNorm keeps its input z for backward, writes its output y, and the LIF keeps y as
well: two full-size tensors per layer. Fused, forward computes the batch statistics, then one pass
normalises and integrates over T, writing only the spikes; backward recomputes y and the
membrane potentials from z with the same arithmetic and runs LIF-BPTT and the BatchNorm backward
together. Only z (plus per-channel statistics) is saved.

Numerics: y = z * scale + shift with scale = gamma / sqrt(var + eps), shift = beta - mean * scale
(biased batch variance, as BatchNorm normalises with), rounding differently from ATen's kernel in
the last bit, so spikes may differ from the unfused model in rare elements sitting exactly on the
threshold; training behaves the same (tested). Running statistics update exactly as
nn.BatchNorm's do (momentum, or the cumulative average when momentum is None; unbiased variance).

Layout: z is viewed as [T, P, C, K] with the channel at dim 2, which covers Linear outputs
[T, B, N, D] (P = B*N, K = 1), channels-last conv outputs (P = B*H*W, K = 1) and NCHW conv
outputs (P = B, K = H*W) without copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from suite.models.kernels import native_cpu
from suite.models.kernels.fused_lif import KERNELS, Kernel, bptt_steps, lif_fused, membrane_steps
from suite.models.spike_storage import mark_spikes

if TYPE_CHECKING:
    from suite.models.neuron import LIF


def _affine(weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor):
    scale = invstd * weight
    return scale.view(1, -1, 1), (bias - mean * scale).view(1, -1, 1)  # broadcast over [P, C, K]


def bn_lif_forward_steps(z, weight, bias, eps: float, tau: float, v_threshold: float):
    """z [T, P, C, K] -> (spikes in z's dtype, batch mean, biased batch var), statistics in fp32."""
    zf = z.float()
    var, mean = torch.var_mean(zf, dim=(0, 1, 3), correction=0)
    scale, shift = _affine(weight, bias, mean, torch.rsqrt(var + eps))
    v = torch.zeros_like(zf[0])
    spikes = []
    for z_t in zf.unbind(0):
        h = v + (z_t * scale + shift - v) / tau
        fired = h >= v_threshold
        v = torch.where(fired, 0.0, h)
        spikes.append(fired.to(z.dtype))
    return torch.stack(spikes), mean, var


def bn_lif_backward_steps(
    grad_spikes, z, mean, invstd, weight, bias, tau: float, v_threshold: float, alpha: float, channel_sums: bool = False
):
    """(dL/dz, dL/dgamma, dL/dbeta, channel sums of dL/dz or None) from dL/ds, recomputing y and
    h from z as forward did. The sums are the gradient of a bias added before the BN."""
    zf = z.float()
    scale, shift = _affine(weight, bias, mean, invstd)
    hs = membrane_steps((z_t * scale + shift for z_t in zf.unbind(0)), tau, v_threshold)
    dy = bptt_steps(grad_spikes.float(), hs, tau, v_threshold, alpha)  # [T, P, C, K]
    x_hat = (zf - mean.view(1, 1, -1, 1)) * invstd.view(1, 1, -1, 1)
    n = dy.numel() // dy.shape[2]
    grad_bias = dy.sum(dim=(0, 1, 3))
    grad_weight = (dy * x_hat).sum(dim=(0, 1, 3))
    grad_z = (dy - (grad_bias / n).view(1, 1, -1, 1) - x_hat * (grad_weight / n).view(1, 1, -1, 1)) * (
        invstd * weight
    ).view(1, 1, -1, 1)
    grad_z = grad_z.to(z.dtype)
    return grad_z, grad_weight, grad_bias, grad_z.sum(dim=(0, 1, 3), dtype=torch.float32) if channel_sums else None


BN_LIF_FORWARD = Kernel(bn_lif_forward_steps, native_cpu.native_bn_lif_forward_steps)
BN_LIF_BACKWARD = Kernel(bn_lif_backward_steps, native_cpu.native_bn_lif_backward_steps)


class BatchNormLIFFunction(torch.autograd.Function):
    """LIF(BN(z + pre_bias)). A per-channel pre_bias (the bias of the Linear before the BN) shifts
    the batch mean by exactly itself and cancels in the normalised output, so the kernels never
    add it: it only enters the returned mean (for the running statistics) and gets its gradient,
    the channel sums of dL/dz, as the Linear's own backward would give it."""

    @staticmethod
    def forward(ctx, z, weight, bias, pre_bias, eps: float, tau: float, v_threshold: float, alpha: float):
        # detach: torch.compile treats Parameters' shapes as static and guards on a view's base,
        # either of which would recompile per layer
        z, weight, bias = z.detach(), weight.detach(), bias.detach()
        spikes, mean, var = KERNELS.run(BN_LIF_FORWARD, z, weight, bias, eps, tau, v_threshold)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(z, mean, invstd, weight, bias)
        ctx.params = (tau, v_threshold, alpha)
        if pre_bias is not None:
            mean = mean + pre_bias.detach().float()
        ctx.mark_non_differentiable(mean, var)
        return mark_spikes(spikes), mean, var

    @staticmethod
    def backward(ctx, grad_spikes, _grad_mean, _grad_var):
        z, mean, invstd, weight, bias = ctx.saved_tensors
        grad_z, grad_weight, grad_bias, grad_pre_bias = KERNELS.run(
            BN_LIF_BACKWARD, grad_spikes.contiguous().detach(), z, mean, invstd, weight, bias, *ctx.params,
            ctx.needs_input_grad[3],
        )
        return grad_z, grad_weight, grad_bias, grad_pre_bias, None, None, None, None


def _update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """What nn.BatchNorm does in training mode: EMA (or cumulative average) with unbiased var."""
    if not bn.track_running_stats or bn.running_mean is None:
        return
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        unbiased = var * (n / max(n - 1, 1))
        bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
        bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)


def can_fuse(bn: nn.Module, lif: LIF, z: torch.Tensor) -> bool:
    """Fuse when BatchNorm uses batch statistics (training) and the LIF runs the fused kernels."""
    return (
        isinstance(bn, nn.modules.batchnorm._BatchNorm)
        and bn.training
        and bn.affine
        and z.is_floating_point()
        and lif.kernel_on(z.device) is lif_fused
    )


def batchnorm_lif(
    bn: nn.modules.batchnorm._BatchNorm, lif: LIF, z4: torch.Tensor, pre_bias: torch.Tensor | None = None
) -> torch.Tensor:
    """LIF(BatchNorm(z + pre_bias)) for z4 = [T, P, C, K] (channel at dim 2; pre_bias [C] or None);
    returns spikes shaped like z4."""
    n = z4.numel() // z4.shape[2]
    if n <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input of size {tuple(z4.shape)}")
    params = (bn.eps, lif.tau, lif.v_threshold)
    inputs = (z4, bn.weight, bn.bias) + ((pre_bias,) if pre_bias is not None else ())
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        spikes, mean, var = BatchNormLIFFunction.apply(z4, bn.weight, bn.bias, pre_bias, *params, lif.alpha)
    else:
        with torch.no_grad():
            spikes, mean, var = KERNELS.run(
                BN_LIF_FORWARD, z4.detach(), bn.weight.detach(), bn.bias.detach(), *params
            )
            if pre_bias is not None:
                mean = mean + pre_bias.float()
    _update_running_stats(bn, mean.detach(), var.detach(), n)
    return spikes


def conv_bn_lif(bn: nn.Module, lif: LIF, z: torch.Tensor, time_steps: int) -> torch.Tensor | None:
    """Spikes [T, B, C, H, W] of LIF(BN(z)) for a conv output z [T*B, C, H, W] (any layout) in one
    fused pass, without calling bn or lif; None where no fused kernel applies (the caller then
    calls the modules)."""
    if not can_fuse(bn, lif, z):
        return None
    TB, C, H, W = z.shape
    B = TB // time_steps
    if z.is_contiguous(memory_format=torch.channels_last) and not z.is_contiguous():
        spikes = batchnorm_lif(bn, lif, z.permute(0, 2, 3, 1).reshape(time_steps, B * H * W, C, 1))
        return spikes.view(TB, H, W, C).permute(0, 3, 1, 2).view(time_steps, B, C, H, W)
    spikes = batchnorm_lif(bn, lif, z.contiguous().view(time_steps, B, C, H * W))
    return spikes.view(time_steps, B, C, H, W)


def inference_affine(bias: torch.Tensor, bn: nn.Module):
    """(scale, shift) with BN(z + bias) == z * scale + shift, for an eval-mode BN or an Identity
    (a BN already folded into the layer), in float32; None when bn is neither."""
    shift = bias.detach().float()
    if isinstance(bn, nn.Identity):
        return torch.ones_like(shift), shift
    if isinstance(bn, nn.modules.batchnorm._BatchNorm) and not bn.training and bn.track_running_stats:
        scale = torch.rsqrt(bn.running_var.float() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach().float()
        beta = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(scale)
        return scale, (shift - bn.running_mean.float()) * scale + beta
    return None


def linear_bn_lif(linear: nn.Linear, bn: nn.Module, lif: LIF, x: torch.Tensor) -> torch.Tensor | None:
    """Spikes of LIF(BN over the last dim(linear(x))) for tokens x [T, B, N, D_in] in one fused
    pass, without calling the modules; None where no fused kernel applies (the caller then calls them).

    In training the Linear runs without its bias, which BatchNormLIFFunction accounts for (no
    broadcast copy of the bias into every output); in inference the bias and the BN's affine map
    go into the LIF pass (natively on CPU).
    """
    if lif.kernel_on(x.device) is not lif_fused:
        return None
    if can_fuse(bn, lif, x):
        z = F.linear(x, linear.weight)
        T, D = z.shape[0], z.shape[-1]
        return batchnorm_lif(bn, lif, z.reshape(T, -1, D, 1), pre_bias=linear.bias).view(z.shape)
    grad_needed = torch.is_grad_enabled() and (x.requires_grad or linear.weight.requires_grad)
    affine = None if grad_needed or linear.bias is None else inference_affine(linear.bias, bn)
    if affine is None:
        return None
    z = F.linear(x, linear.weight)
    if native_cpu.supports(z) and KERNELS.native_enabled:
        return native_cpu.native_affine_lif_forward(z, *affine, lif.tau, lif.v_threshold)
    return lif(z * affine[0].to(z.dtype) + affine[1].to(z.dtype))
