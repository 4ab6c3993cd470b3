"""Multi-step LIF neurons, numerically identical to spikingjelly 2.0's
`neuron.LIFNode(tau=2.0, decay_input=True, v_reset=0.0, detach_reset=True, step_mode='m',
surrogate_function=surrogate.Sigmoid(alpha=4.0))`.

Per time step t (hard reset to 0, decay_input):
    h[t] = v[t-1] + (x[t] - v[t-1]) / tau
    s[t] = heaviside(h[t] - v_threshold)            (backward: sigmoid surrogate, alpha)
    v[t] = h[t] * (1 - s[t])                         (s detached: detach_reset)
with v[-1] = 0. The state lives only inside one call, so nothing leaks between batches and callers
never reset anything.

`LIF` runs one of the backends of `suite.models.kernels.dispatch`: "reference" (a plain per-step
autograd loop, the ground truth, suite.models.kernels.reference), the fused kernels (native C++ on
CPU, Triton on CUDA, torch code elsewhere), or "spikingjelly" (spikingjelly's own LIF kernels).

Precision: the reference and the CPU fused kernels compute in their input's dtype; the Triton
kernel ("fused_cuda") and spikingjelly keep an fp32 membrane for fp16/bf16 inputs, so for those
inputs they equal `lif_reference(x.float())` rounded to x's dtype (see suite.models.kernels.lif_triton).
"""

from __future__ import annotations

import torch
from torch import nn

from suite.models.kernels import dispatch


class LIF(nn.Module):
    """Multi-step LIF layer over inputs shaped [T, ...]; returns spikes of the same shape.

    `backend` (a name of `dispatch.backend_names()`) is resolved when the layer is built and again
    only when it is set (`set_backend`, or assigning `backend`); the repr shows the choice."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, alpha: float = 4.0, backend: str = "auto"):
        super().__init__()
        self.tau = tau
        self.v_threshold = v_threshold
        self.alpha = alpha
        self.set_backend(backend)  # a typo fails here, not at the first forward

    def set_backend(self, name: str) -> None:
        """Run backend `name` from now on (UnknownNameError listing the valid names otherwise)."""
        self.choice = dispatch.BackendChoice(name)

    @property
    def backend(self) -> str:
        return self.choice.requested

    @backend.setter
    def backend(self, name: str) -> None:
        self.set_backend(name)

    def kernel_on(self, device: torch.device):
        """The function this layer runs for inputs on `device` (fused block paths compare it)."""
        return self.choice.kernel_on(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.choice.kernel_on(x.device)(x, self.tau, self.v_threshold, self.alpha)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, alpha={self.alpha}, backend={self.choice!r}"


def describe_backends(model: nn.Module, device: torch.device) -> str:
    """What the model's LIF layers run on here, e.g. "fused_cpu (native C++ kernels /path/native_cpu-<key>.so)":
    the line a run logs so that a slow fallback never goes unnoticed."""
    names = sorted({m.choice.name_on(device) for m in model.modules() if isinstance(m, LIF)})
    return ", ".join(f"{name} ({dispatch.describe(name, device)})" for name in names) or "no LIF layers"
