"""Per-call operation counts of Linear, Conv and attention-product matmuls.

Every function returns (sops, dense_macs, real_macs): the data-dependent counts as 0-dim float64
tensors on the input's device, and dense_macs, which only depends on shapes, as a Python float.
Which rule applies (spikes or real values) is decided with `torch.where`, never `.item()`, and no
Python number is copied to the device, so counting inside a forward pass adds no host-device
synchronisation.

Definitions (the paper's convention, SOPs = firing rate x T x FLOPs, made exact per call):

* Layer input as spikes. A Linear or Conv input counts as spikes when every value is an integer:
  0/1 spikes, or sums of spike trains such as Spikformer's residual stream `x + rpe(x)` (values
  0/1/2/...). A value v stands for |v| spikes arriving together, each one an accumulate (AC) per
  synapse it reaches, so SOPs = sum(|x| * fan-out). Fan-out is exact: `out_features` for a Linear;
  for a Conv, (C_out / groups) x the number of kernel taps that cover the element, which is fewer
  than k*k at zero-padded borders (spikingjelly's op_counter counts conv synops the same way).
  For a Linear this equals rate x T x FLOPs exactly, with rate = mean input value.
* Real-valued input (an image, the classifier's mean of spike counts): dense multiply-accumulates,
  E_MAC each. A static image that the model repeats over T time steps is counted once at the
  encoding layer (the first layer the input reaches), as the paper does: identical inputs give
  identical outputs, computed once.
* Attention products (matmuls inside an attention-product module). An operand is a spike operand
  when it is binary (Q, K, V come straight from LIF neurons); an integer intermediate such as
  K^T V is a stored matrix, not a spike train. Then:
    - spikes x spikes: an accumulate happens only where both operands are 1, so
      SOPs = sum(A @ B) = sum_k colsum(A)_k * rowsum(B)_k  (~ fr_A * fr_B * T * FLOPs);
    - spikes x matrix: each spike adds one row (or column) of the other operand:
      SOPs = nnz(spikes) * that operand's free size  (= fr * T * FLOPs);
    - neither: dense MACs.
  For Spikformer's Q (K^T V) (used when N > d): K^T V costs the (k, v) coincidences over tokens,
  then Q (K^T V) costs nnz(Q) * d = fr_Q * T * N * d^2 per head. For (Q K^T) V (N <= d): the
  (q, k) coincidences, then nnz(V) * N. This matches spikingjelly 2.0's SynOpCounter rules for
  mm/bmm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FLOAT64 = torch.float64


def is_integer_valued(x: torch.Tensor) -> torch.Tensor:
    """0-dim bool tensor: every element is a whole number (NaN and inf are not: their frac is NaN)."""
    if not x.is_floating_point():
        return torch.ones((), dtype=torch.bool, device=x.device)
    return (x.frac() == 0).all()


def is_binary(x: torch.Tensor) -> torch.Tensor:
    """0-dim bool tensor: every element is 0 or 1."""
    return x.eq(0).logical_or_(x.eq(1)).all()


def _sum_dtype(x: torch.Tensor) -> torch.dtype:
    # fp32 per call for fp32/fp16/bf16: a float64 reduction would first copy the whole activation;
    # fp16/bf16 would lose integers above 2048/256. A float64 model (the exactness tests) keeps
    # float64, which vector_norm requires. Sums over calls accumulate in float64.
    if x.dtype == FLOAT64 or not x.is_floating_point():
        return FLOAT64
    return torch.float32


def abs_sum(x: torch.Tensor, dim=None, keepdim: bool = False) -> torch.Tensor:
    """sum(|x|) in one pass (see `_sum_dtype`), as float64 when reducing everything."""
    if not x.is_floating_point():  # vector_norm takes floating inputs only
        x = x.to(FLOAT64)
    reduced = torch.linalg.vector_norm(x, 1, dim=dim, keepdim=keepdim, dtype=_sum_dtype(x))
    return reduced.to(FLOAT64) if dim is None else reduced


def total(x: torch.Tensor) -> torch.Tensor:
    """sum(x) as a float64 0-dim tensor, reduced in fp32 (see `_sum_dtype`)."""
    return x.sum(dtype=_sum_dtype(x)).to(FLOAT64)


def _zero(device: torch.device) -> torch.Tensor:
    return torch.zeros((), dtype=FLOAT64, device=device)


def time_repeat_factor(x: torch.Tensor, time_steps: int | None, batch: int | None) -> torch.Tensor:
    """How many identical time steps a real-valued input holds: T when a time-major input
    ([T, B, ...] or [T*B, ...]) is the same at every step, else 1 (float64, 0-dim)."""
    one = torch.ones((), dtype=FLOAT64, device=x.device)
    if not time_steps or time_steps < 2 or not batch or x.shape[0] not in (time_steps, time_steps * batch):
        return one
    steps = x.reshape(time_steps, -1)
    repeated = (steps == steps[:1]).all()
    return torch.where(repeated, torch.full_like(one, float(time_steps)), one)


def _split(spiking: torch.Tensor, sops: torch.Tensor, dense: float, repeat: torch.Tensor):
    zero = _zero(sops.device)
    return torch.where(spiking, sops, zero), dense, torch.where(spiking, zero, repeat.reciprocal() * dense)


def linear_counts(module: nn.Linear, x: torch.Tensor, repeat: torch.Tensor):
    """(sops, dense_macs, real_macs) of one nn.Linear call on input x [..., in_features]."""
    dense = float(x.numel()) * module.out_features
    spikes = abs_sum(x) * module.out_features
    return _split(is_integer_valued(x), spikes, dense, repeat)


def _conv_fn(dims: int):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]


def conv_weight_uses(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor:
    """sum over input elements of |x| * (number of weights the element meets), float64 0-dim.

    One single-channel convolution of the channel-summed |x| with a ones kernel gives, per output
    position, the input mass under the kernel; each of it meets C_out/groups filters.
    """
    dims = len(module.kernel_size)
    if x.dim() == dims + 1:  # unbatched input [C, *spatial]
        x = x.unsqueeze(0)
    elif x.dim() == dims + 3:  # time-major [T, B, C, *spatial] (spikingjelly's multi-step layers)
        x = x.flatten(0, 1)
    mass = abs_sum(x, dim=1, keepdim=True)  # fp32
    padding = module.padding
    if module.padding_mode != "zeros":
        mass = F.pad(mass, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    ones = torch.ones((1, 1, *module.kernel_size), dtype=mass.dtype, device=mass.device)
    covered = _conv_fn(dims)(mass, ones, None, module.stride, padding, module.dilation)
    return covered.sum(dtype=FLOAT64) * (module.out_channels // module.groups)


def conv_counts(module: nn.modules.conv._ConvNd, x: torch.Tensor, out: torch.Tensor, repeat: torch.Tensor):
    """(sops, dense_macs, real_macs) of one Conv1d/2d/3d call (input [R, C, *spatial] or [T, B, C, *spatial])."""
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    dense = float(out.numel()) * per_output
    return _split(is_integer_valued(x), conv_weight_uses(module, x), dense, repeat)


def matmul_counts(a: torch.Tensor, b: torch.Tensor):
    """(sops, dense_macs, real_macs) of `a @ b` with a [..., m, k], b [..., k, n] (broadcast batch)."""
    if a.dim() == 1:
        a = a.unsqueeze(0)
    if b.dim() == 1:
        b = b.unsqueeze(-1)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch_shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    batch = math.prod(batch_shape)
    dense = float(batch) * m * k * n

    col_a = abs_sum(a, dim=-2)  # [..., k]: spikes of a per contraction index
    row_b = abs_sum(b, dim=-1)  # [..., k]
    coincidences = (col_a * row_b).sum(dtype=FLOAT64)  # broadcast over batch == sum(a @ b) for 0/1 operands
    # A broadcast operand is reused for every batch entry it is broadcast over.
    spikes_a = col_a.sum(dtype=FLOAT64) * (batch / math.prod(a.shape[:-2])) * n
    spikes_b = row_b.sum(dtype=FLOAT64) * (batch / math.prod(b.shape[:-2])) * m

    a_bin, b_bin = is_binary(a), is_binary(b)
    zero = _zero(a.device)
    sops = torch.where(
        a_bin & b_bin, coincidences, torch.where(a_bin, spikes_a, torch.where(b_bin, spikes_b, zero))
    )
    real = torch.where(a_bin | b_bin, zero, torch.ones_like(zero) * dense)
    return sops, dense, real
