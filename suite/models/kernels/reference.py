"""Multi-step LIF reference: a plain per-step autograd loop, the ground truth every other backend
is tested against (the semantics are in suite.models.neuron's docstring)."""

from __future__ import annotations

import torch


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
