"""Linear -> BatchNorm -> LIF fast paths (suite.models.kernels.fused_bn_lif.linear_bn_lif) against the
plain module-by-module computation: training without the Linear's bias add, inference with the
bias and the BatchNorm's affine map inside the LIF pass, and the public switch that makes the block
call its modules (so that hooks see them)."""

from __future__ import annotations

import copy

import pytest
import torch

from suite.models.fast_paths import unfused
from suite.models.fold import fold_batchnorm
from suite.models.kernels import native_cpu
from suite.models.kernels.fused_lif import KERNELS
from suite.models.spikformer import LinearBNLIF


def layer_pair(d_in=24, d_out=40, seed=0):
    torch.manual_seed(seed)
    fast = LinearBNLIF(d_in, d_out, bias=True, backend="auto")
    with torch.no_grad():
        fast.linear.bias.uniform_(-0.5, 0.5)
        fast.bn.weight.uniform_(1.0, 2.0)
        fast.bn.bias.uniform_(0.5, 1.5)
    slow = copy.deepcopy(fast)
    slow.lif.backend = "reference"  # the module-by-module path with the reference neuron
    return fast, slow


def tokens(T=4, B=3, N=50, D=24, seed=1):
    torch.manual_seed(seed)
    return torch.randn(T, B, N, D) * 2


@pytest.fixture(params=["native", "torch"])
def kernels(request, monkeypatch):
    if request.param == "native":
        assert native_cpu.available(), "the native CPU kernels did not build: install g++ or set CXX"
    monkeypatch.setattr(KERNELS, "native_enabled", request.param == "native")
    return request.param


def test_training_without_the_bias_add_gives_the_same_spikes_gradients_and_statistics(kernels):
    fast, slow = layer_pair()
    x = tokens().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    for _ in range(2):  # twice: the running mean must carry the bias as nn.BatchNorm1d's does
        spikes, expected = fast(x), slow(x_ref)
    torch.testing.assert_close(spikes, expected, rtol=0, atol=0)  # no spike may differ
    assert 0.05 < spikes.mean().item() < 0.95
    grad = torch.randn_like(spikes)
    spikes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(fast.linear.weight.grad, slow.linear.weight.grad, rtol=1e-3, atol=1e-4)
    # the bias cancels in BatchNorm's output: both gradients are sums of dL/dz that are ~0
    torch.testing.assert_close(fast.linear.bias.grad, slow.linear.bias.grad, rtol=0, atol=1e-4)
    assert fast.linear.bias.grad.abs().max().item() < 1e-4
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(fast.bn, name), getattr(slow.bn, name), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("folded", [False, True])
def test_inference_puts_the_bias_and_batchnorm_into_the_lif_pass(kernels, folded):
    fast, slow = layer_pair()
    with torch.no_grad():
        fast.bn.running_mean.uniform_(-0.3, 0.3)
        fast.bn.running_var.uniform_(0.5, 2.0)
    slow.load_state_dict(fast.state_dict())
    fast.eval(), slow.eval()
    if folded:
        fast = fold_batchnorm(fast)
    x = tokens()
    with torch.inference_mode():
        spikes, expected = fast(x), slow(x)
    torch.testing.assert_close(spikes, expected, rtol=0, atol=0)  # no spike may differ
    assert 0.05 < spikes.mean().item() < 0.95


def test_unfused_calls_every_module_so_hooks_see_them_and_the_spikes_stay_the_same():
    fast, _ = layer_pair()
    seen = []
    fast.linear.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
    x = tokens()
    fast.eval()
    with torch.no_grad():
        expected = fast(x)
        assert seen == []  # the fused path computes the Linear without calling the module
        with unfused(fast):
            spikes = fast(x)
    assert seen == [(4, 3, 50, 40)]
    torch.testing.assert_close(spikes, expected, rtol=0, atol=0)
    assert fast.fused  # switched back on after the block
    fast.train()
    with unfused(fast):
        fast(x)
    assert seen == [(4, 3, 50, 40), (4, 3, 50, 40)]
