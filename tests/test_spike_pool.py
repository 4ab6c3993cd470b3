"""SpikeMaxPool2d (native CPU kernel) against nn.MaxPool2d: outputs, gradients, fallbacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite.models import spike_storage
from suite.models.kernels import native_cpu
from suite.models.kernels.fused_lif import KERNELS, lif_fused
from suite.models.spike_pool import SpikeMaxPool2d


@pytest.fixture(autouse=True)
def native_kernels(monkeypatch):
    assert native_cpu.available(), "the native CPU kernels did not build: install g++ or set CXX"
    monkeypatch.setattr(KERNELS, "native_enabled", True)


def spike_map(N=6, C=20, H=11, W=9, dtype=torch.float32, density=0.3, seed=0):
    torch.manual_seed(seed)
    x = (torch.rand(N, C, H, W) < density).to(dtype)
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("geometry", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
@pytest.mark.parametrize("values", ["spikes", "real"])
def test_output_and_gradient_equal_nn_maxpool(dtype, geometry, values):
    k, s, p = geometry
    x = spike_map(dtype=dtype)
    if values == "real":  # ties are rare, but ATen's routing must hold for any input
        x = (torch.randn(x.shape) * 2).to(dtype).contiguous(memory_format=torch.channels_last)
    x_ref = x.detach().clone().requires_grad_(True)
    x = x.requires_grad_(True)
    pool, reference = SpikeMaxPool2d(k, s, p), nn.MaxPool2d(k, s, p)
    assert pool.native_geometry(x) == (k, s, p)
    out, expected = pool(x), reference(x_ref)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, expected)
    grad = torch.randn(out.shape).to(dtype)
    out.backward(grad)
    expected.backward(grad)
    if dtype == torch.float32:
        assert torch.equal(x.grad, x_ref.grad)  # same routing, same summation order
    else:  # overlapping windows' sums: rounded once here, at every addition in ATen's bfloat16
        exact = x_ref.detach().float().requires_grad_(True)
        reference(exact).backward(grad.float())
        torch.testing.assert_close(x.grad.float(), exact.grad, rtol=2 ** -8, atol=1e-6)


def test_a_window_of_zeros_routes_to_its_first_element_as_aten_does():
    x = torch.zeros(1, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    SpikeMaxPool2d(3, 2, 1)(x).sum().backward()
    nn.MaxPool2d(3, 2, 1)(x_ref).sum().backward()
    assert torch.equal(x.grad, x_ref.grad) and x.grad.sum().item() == 3 * 4


def test_backward_keeps_the_uint8_copy_of_spikes_not_a_float_map(monkeypatch):
    monkeypatch.setattr(spike_storage, "MIN_ELEMENTS", 0)
    currents = (torch.randn(4, 2, 8, 6, 6) * 2).contiguous()
    x = currents.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(4, 2, 8, 6, 6).requires_grad_(True)
    saved = []
    with spike_storage.compact_saved_spikes():
        spikes = lif_fused(x, 2.0, 1.0, 4.0).flatten(0, 1)  # channels-last spike map with a uint8 copy
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
            out = SpikeMaxPool2d(3, 2, 1)(spikes)
    assert saved == [torch.uint8]
    assert spike_storage.is_marked(out) and spike_storage._twin_view(out) is not None
    out.sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    from suite.models.kernels.reference import lif_reference

    nn.MaxPool2d(3, 2, 1)(lif_reference(x_ref, 2.0, 1.0, 4.0).flatten(0, 1)).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case",
    ["nchw", "ceil_mode", "dilation", "float64", "native_off"],
)
def test_other_calls_fall_back_to_nn_maxpool(case, monkeypatch):
    kwargs = {"ceil_mode": case == "ceil_mode", "dilation": 2 if case == "dilation" else 1}
    pool = SpikeMaxPool2d(3, 2, 1, **kwargs)
    x = spike_map(dtype=torch.float64 if case == "float64" else torch.float32)
    if case == "nchw":
        x = x.contiguous()
    if case == "native_off":
        monkeypatch.setattr(KERNELS, "native_enabled", False)
    else:
        assert pool.native_geometry(x) is None
    assert torch.equal(pool(x), nn.MaxPool2d(3, 2, 1, **kwargs)(x))
