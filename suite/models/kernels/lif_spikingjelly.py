"""LIF backend "spikingjelly": spikingjelly 2.0's own registered LIF kernels (CPU, and CUDA/Triton
kernels maintained and GPU-tested by its authors), configured to the suite's LIF semantics, so a
run can switch away from the suite's Triton kernel with one option (`lif_backend: spikingjelly`).

The configuration is the one suite.models.neuron describes: `functional.lif_multi_step` with
decay_input=True, v_reset=0.0 (hard reset to 0), detach_reset=True, surrogate.Sigmoid(alpha), a
zero fp32 initial membrane per call (no state between calls), multi-step over [T, ...]. Like the
Triton kernel it keeps the membrane in fp32 for fp16/bf16 inputs. spikingjelly is imported on
first use (it takes seconds), not when the suite's models are imported.
"""

from __future__ import annotations

import torch


def lif_spikingjelly(x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
    from spikingjelly.activation_based import functional, surrogate

    if x.numel() == 0:
        return torch.zeros_like(x)
    v_initial = torch.zeros(x.shape[1:], dtype=torch.float32, device=x.device)
    spikes, _, _ = functional.lif_multi_step(
        x, v_initial, float(tau), True, float(v_threshold), 0.0, surrogate.Sigmoid(alpha=float(alpha)),
        True, False,  # detach_reset, store_v_seq
    )
    return spikes

