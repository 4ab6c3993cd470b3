"""Multi-step LIF neurons, numerically identical to spikingjelly 2.0's
`neuron.LIFNode(tau=2.0, decay_input=True, v_reset=0.0, detach_reset=True, step_mode='m',
surrogate_function=surrogate.Sigmoid(alpha=4.0))`.

Per time step t (hard reset to 0, decay_input):
    h[t] = v[t-1] + (x[t] - v[t-1]) / tau
    s[t] = heaviside(h[t] - v_threshold)            (backward: sigmoid surrogate, alpha)
    v[t] = h[t] * (1 - s[t])                         (s detached: detach_reset)
with v[-1] = 0. The state lives only inside one call, so nothing leaks between batches and callers
never reset anything.

`LIF` dispatches to a backend: "reference" (a plain per-step autograd loop, the ground truth),
a fused kernel registered in `BACKENDS` by `suite.models.lif_fused` when available, or
"spikingjelly" (spikingjelly's own registered LIF kernels, suite.models.lif_spikingjelly).

Precision: the reference and the CPU fused kernels compute in their input's dtype; the Triton
kernel ("fused_cuda") and spikingjelly keep an fp32 membrane for fp16/bf16 inputs, so for those
inputs they equal `lif_reference(x.float())` rounded to x's dtype (see suite.models.lif_triton).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside forward, alpha * sigmoid'(alpha * x) backward (spikingjelly's surrogate.Sigmoid)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad_out * (ctx.alpha * sg * (1.0 - sg)), None


def lif_reference(x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:
    """x: [T, ...] input currents -> [T, ...] spikes (0/1), differentiable through the surrogate."""
    v = torch.zeros_like(x[0])
    spikes = []
    for x_t in x.unbind(0):
        h = v + (x_t - v) / tau
        s = SigmoidSurrogateSpike.apply(h - v_threshold, alpha)
        v = h * (1.0 - s.detach())
        spikes.append(s)
    return torch.stack(spikes)


# name -> fn(x, tau, v_threshold, alpha) -> spikes; fused kernels add themselves here. The one list
# of LIF backends: validation and error messages read it (`backend_names`).
BACKENDS: dict[str, Callable[..., torch.Tensor]] = {"reference": lif_reference}
# name -> why 'auto' must not pick it (it stays selectable by name); see lif_triton.register.
AUTO_EXCLUDED: dict[str, str] = {}
AUTO_BACKEND = "auto"


def backend_names() -> list[str]:
    """Every name `LIF(backend=...)` accepts on this machine: 'auto', then the registered backends."""
    return [AUTO_BACKEND, *sorted(BACKENDS)]


def check_backend(name: str) -> str:
    """`name` if it is a registered backend or 'auto'; else UnknownNameError listing the valid names."""
    from suite.errors import UnknownNameError

    if name != AUTO_BACKEND and name not in BACKENDS:
        raise UnknownNameError(f"unknown LIF backend {name!r}; valid backends: {', '.join(backend_names())}")
    return name


def backend_name(name: str, device: torch.device) -> str:
    """The registered backend `name` stands for on `device`: 'auto' picks the fastest one that is
    not excluded from 'auto'; the rest must be registered."""
    if check_backend(name) == AUTO_BACKEND:
        for candidate in (f"fused_{device.type}", "fused", "reference"):
            if candidate in BACKENDS and candidate not in AUTO_EXCLUDED:
                return candidate
    return name


def resolve_backend(name: str, device: torch.device) -> Callable[..., torch.Tensor]:
    return BACKENDS[backend_name(name, device)]


class LIF(nn.Module):
    """Multi-step LIF layer over inputs shaped [T, ...]; returns spikes of the same shape."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, alpha: float = 4.0, backend: str = "auto"):
        super().__init__()
        self.tau = tau
        self.v_threshold = v_threshold
        self.alpha = alpha
        self.backend = check_backend(backend)  # a typo fails here, not at the first forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = resolve_backend(self.backend, x.device)
        return fn(x, self.tau, self.v_threshold, self.alpha)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, alpha={self.alpha}, backend={self.backend!r}"
