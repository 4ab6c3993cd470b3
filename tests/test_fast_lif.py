"""Fast paths of the backbone give the reference results: fused LIF (eager and torch.compile'd),
fused BatchNorm+LIF, BatchNorm folding, and a short training run with either backend."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from suite.models import create_model
from suite.models.fold import fold_batchnorm, folded_weight_and_bias
from suite.models.kernels import fused_lif, native_cpu
from suite.models.kernels.dispatch import BACKENDS, BackendChoice
from suite.models.kernels.fused_bn_lif import batchnorm_lif
from suite.models.kernels.fused_lif import KERNELS
from suite.models.kernels.reference import lif_reference
from suite.models.neuron import LIF


@pytest.fixture(params=["eager", "compiled", "native"])
def kernel_mode(request, monkeypatch):
    """Run the test with the eager torch kernels, the torch.compile'd ones (any size), and the
    hand-written native CPU kernels."""
    if request.param == "native" and not native_cpu.available():
        pytest.fail("the native CPU kernels did not build: install g++ or set CXX (see suite.models.kernels.native_cpu's warning)")
    monkeypatch.setattr(KERNELS, "native_enabled", request.param == "native")
    monkeypatch.setattr(KERNELS, "compile_enabled", request.param == "compiled")
    monkeypatch.setattr(KERNELS, "compile_min_elements", 0)
    return request.param


def currents(*shape, seed=0):
    """Input currents that make a fair share of neurons fire and a fair share stay silent."""
    torch.manual_seed(seed)
    return torch.randn(*shape) * 1.5 + 0.6


@pytest.mark.parametrize("v_threshold", [1.0, 0.5])
@pytest.mark.parametrize("shape", [(4, 3, 257), (6, 2, 5, 7, 3), (1, 10)])
def test_fused_lif_spikes_equal_reference_and_gradients_match(kernel_mode, v_threshold, shape):
    x = currents(*shape).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    spikes = fused_lif.lif_fused(x, 2.0, v_threshold, 4.0)
    expected = lif_reference(x_ref, 2.0, v_threshold, 4.0)
    assert torch.equal(spikes, expected)
    if shape[0] > 1:
        assert 0.05 < spikes.mean().item() < 0.95
    grad = torch.randn_like(spikes)
    spikes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_fused_lif_gradient_equals_reference_in_float64():
    """The hand-derived BPTT recurrence is the reference autograd graph's gradient, not an
    approximation of it: in float64 they agree to rounding."""
    x = currents(5, 64, seed=3).double().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    grad = torch.randn(5, 64, dtype=torch.float64)
    fused_lif.lif_fused(x, 2.0, 1.0, 4.0).backward(grad)
    lif_reference(x_ref, 2.0, 1.0, 4.0).backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-14)
    assert x.grad.abs().sum() > 0


def test_fused_lif_keeps_channels_last_layout_and_handles_any_gradient_layout(kernel_mode):
    x = currents(3 * 2, 5, 4, 4).contiguous(memory_format=torch.channels_last).view(3, 2, 5, 4, 4)
    x.requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    spikes = fused_lif.lif_fused(x, 2.0, 1.0, 4.0)
    assert spikes.stride() == x.stride()  # no layout change, no copy of the input
    expected = lif_reference(x_ref, 2.0, 1.0, 4.0)
    assert torch.equal(spikes, expected)
    grad = torch.randn(3, 2, 4, 4, 5).permute(0, 1, 4, 2, 3)  # a third layout
    spikes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_fused_lif_of_an_expanded_static_input():
    image = currents(1, 2, 6)
    x = image.expand(4, 2, 6).requires_grad_(False)
    assert torch.equal(fused_lif.lif_fused(x, 2.0, 1.0, 4.0), lif_reference(x, 2.0, 1.0, 4.0))


def test_fused_lif_saves_one_input_sized_tensor_instead_of_per_step_graphs():
    saved = {"fused": 0, "reference": 0}

    def counter(name):
        def pack(t):
            saved[name] += t.numel() * t.element_size()
            return t

        return pack

    x = currents(4, 1000).requires_grad_(True)
    for name, fn in (("fused", fused_lif.lif_fused), ("reference", lif_reference)):
        with torch.autograd.graph.saved_tensors_hooks(counter(name), lambda t: t):
            fn(x, 2.0, 1.0, 4.0)
    assert saved["fused"] == x.numel() * 4  # x itself; h and the spikes are recomputed
    assert saved["reference"] >= 2 * saved["fused"]  # per step: h - v_th and h (and more)


def test_bf16_input_gives_bf16_spikes_like_the_reference():
    x = currents(4, 300).bfloat16()
    spikes = fused_lif.lif_fused(x, 2.0, 1.0, 4.0)
    assert spikes.dtype == torch.bfloat16
    assert torch.equal(spikes, lif_reference(x, 2.0, 1.0, 4.0))


def test_auto_backend_picks_the_fused_kernel_on_cpu():
    assert {"fused", "fused_cpu"} <= set(BACKENDS)
    assert BackendChoice("auto").kernel_on(torch.device("cpu")) is fused_lif.lif_fused
    assert LIF().backend == "auto"


def test_a_failing_compile_falls_back_to_the_eager_kernel(monkeypatch, caplog):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("simulated C++ compiler failure")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(KERNELS, "native_enabled", False)
    monkeypatch.setattr(KERNELS, "_compiled", {})
    monkeypatch.setattr(KERNELS, "compile_enabled", True)
    monkeypatch.setattr(KERNELS, "compile_min_elements", 0)
    x = currents(4, 50)
    with caplog.at_level(logging.WARNING, logger="suite.models.kernels.fused_lif"):
        spikes = fused_lif.lif_fused(x, 2.0, 1.0, 4.0)
    assert torch.equal(spikes, lif_reference(x, 2.0, 1.0, 4.0))
    assert "simulated C++ compiler failure" in caplog.text and "eager" in caplog.text
    assert KERNELS.compile_enabled is False


# -- BatchNorm + LIF fused ---------------------------------------------------------------------

def _bn_pair(channels, momentum=0.1):
    torch.manual_seed(1)
    fused, reference = nn.BatchNorm2d(channels, momentum=momentum), nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        fused.weight.uniform_(0.5, 2.0)
        fused.bias.uniform_(0.0, 1.0)
    reference.load_state_dict(fused.state_dict())
    return fused, reference


@pytest.mark.parametrize("momentum", [0.1, None])
def test_fused_batchnorm_lif_matches_batchnorm_then_reference_lif(kernel_mode, momentum):
    T, P, C, K = 4, 6, 5, 9
    z = (currents(T, P, C, K) * 2).requires_grad_(True)
    z_ref = z.detach().clone().requires_grad_(True)
    bn, bn_ref = _bn_pair(C, momentum)
    for _ in range(2):  # twice: running statistics must follow nn.BatchNorm's update rule
        spikes = batchnorm_lif(bn, LIF(), z)
        expected = lif_reference(bn_ref(z_ref.reshape(T * P, C, K, 1)).view(T, P, C, K), 2.0, 1.0, 4.0)
    assert torch.equal(spikes, expected)
    assert 0.05 < spikes.mean().item() < 0.95
    grad = torch.randn_like(spikes)
    spikes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.weight.grad, bn_ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.bias.grad, bn_ref.bias.grad, rtol=1e-4, atol=1e-4)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(bn_ref, name), rtol=1e-5, atol=1e-6)


def test_fused_batchnorm_lif_saves_only_its_input():
    saved = []
    z = currents(4, 8, 16, 1).requires_grad_(True)
    bn, _ = _bn_pair(16)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        batchnorm_lif(bn, LIF(), z)
    assert max(saved) == z.numel() and sum(saved) == z.numel() + 4 * 16  # z, mean, invstd, gamma, beta


def test_model_uses_the_unfused_path_in_eval_and_with_the_reference_backend():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 3
    ref = create_model("spikformer-1-32", num_classes=4, lif_backend="reference")
    fast = create_model("spikformer-1-32", num_classes=4)
    fast.load_state_dict(ref.state_dict())
    with torch.no_grad():
        ref.train()(x), fast.train()(x)  # the fused path updates running statistics like BN does
    for (name, a), b in zip(ref.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5, msg=name)
    ref.eval(), fast.eval()
    with torch.no_grad():
        assert torch.equal(ref(x), fast(x))  # eval: plain BatchNorm + fused LIF, bit for bit


# -- a short training run: same accuracy within noise ------------------------------------------

def _train_tiny(backend: str, steps: int = 30) -> tuple[list[float], float]:
    torch.manual_seed(0)
    classes = 3
    protos = torch.rand(classes, 3, 16, 16) * 3  # three prototypes plus noise: learnable in a few steps
    labels = torch.arange(48) % classes
    data = (protos[labels] + 0.3 * torch.randn(48, 3, 16, 16)).clamp(min=0)
    torch.manual_seed(1)
    model = create_model("spikformer-1-32", num_classes=classes, img_size=16, time_steps=2, lif_backend=backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        idx = torch.arange(16) + 16 * (step % 3)
        loss = nn.functional.cross_entropy(model(data[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():  # batch statistics, as in training (30 steps are too few for running ones)
        accuracy = (model(data).argmax(1) == labels).float().mean().item()
    return losses, accuracy


def test_short_training_reaches_the_same_loss_and_accuracy_with_both_backends(monkeypatch):
    monkeypatch.setattr(KERNELS, "compile_enabled", False)  # the eager fused kernels; compiled ones are
    reference_losses, reference_acc = _train_tiny("reference")  # tested against the eager ones above
    fused_losses, fused_acc = _train_tiny("auto")
    assert reference_losses[-1] < 0.6 * reference_losses[0]  # the run actually learned
    assert abs(sum(fused_losses[-5:]) - sum(reference_losses[-5:])) / 5 < 0.1
    assert reference_acc > 0.8 and abs(fused_acc - reference_acc) <= 0.1


# -- BatchNorm folding -------------------------------------------------------------------------

def _calibrated(model, x):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def test_folded_conv_and_linear_equal_layer_then_batchnorm():
    torch.manual_seed(0)
    for layer, bn, x in (
        (nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), torch.randn(2, 3, 5, 5)),
        (nn.Linear(6, 4), nn.BatchNorm1d(4), torch.randn(7, 6)),
    ):
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
        bn.eval()
        weight, bias = folded_weight_and_bias(layer.weight, layer.bias, bn)
        folded = (
            nn.functional.conv2d(x, weight, bias, padding=1) if isinstance(layer, nn.Conv2d)
            else nn.functional.linear(x, weight, bias)
        )
        torch.testing.assert_close(folded, bn(layer(x)), rtol=1e-5, atol=1e-5)


def test_folded_model_gives_the_same_logits_and_leaves_the_original_alone():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32) * 4
    model = _calibrated(create_model("spikformer-1-32", num_classes=5).double(), x.double())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert folded.folded_batchnorms == 5 + 6  # SPS: 4 stages + rpe; block: q, k, v, proj, fc1, fc2
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        expected, got = model(x.double()), folded(x.double())
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_folding_a_batchnorm_without_running_statistics_is_refused():
    layer, bn = nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False)
    with pytest.raises(ValueError, match="running statistics"):
        folded_weight_and_bias(layer.weight, layer.bias, bn.eval())


# -- CUDA / Triton -----------------------------------------------------------------------------

def test_triton_module_refuses_cpu_tensors():
    triton_lif = pytest.importorskip("suite.models.kernels.lif_triton", reason="triton is not installed")
    with pytest.raises(ValueError, match="CUDA tensor"):
        triton_lif.lif_triton(torch.zeros(2, 3), 2.0, 1.0, 4.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("v_threshold", [1.0, 0.5])
def test_triton_lif_matches_reference_on_cuda(v_threshold):
    triton_lif = pytest.importorskip("suite.models.kernels.lif_triton", reason="triton is not installed")
    assert BackendChoice("auto").kernel_on(torch.device("cuda")) is triton_lif.lif_triton
    x = currents(4, 3, 1025).cuda().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    spikes = triton_lif.lif_triton(x, 2.0, v_threshold, 4.0)
    expected = lif_reference(x_ref, 2.0, v_threshold, 4.0)
    assert torch.equal(spikes, expected)
    grad = torch.randn_like(spikes)
    spikes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)



# -- spikes saved for backward as uint8 --------------------------------------------------------

def test_saved_spikes_are_stored_as_uint8_and_restored_exactly():
    from suite.models import spike_storage

    x = currents(4 * 2, 6, 5, 5).contiguous(memory_format=torch.channels_last).view(4, 2, 6, 5, 5)
    spikes = fused_lif.lif_fused(x.requires_grad_(True), 2.0, 1.0, 4.0)
    view = spikes.flatten(0, 1)  # what the next conv saves: a channels-last view of the spikes
    assert spike_storage.is_marked(view) and not spike_storage.is_marked(x)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spike_storage, "MIN_ELEMENTS", 0)
        packed = spike_storage._pack(view)
        assert packed[2].dtype == torch.uint8 and spike_storage._pack(x) is x
    restored = spike_storage._unpack(packed)
    assert torch.equal(restored, view) and restored.stride() == view.stride() and restored.dtype == view.dtype


def test_compact_spike_storage_leaves_gradients_bit_for_bit_unchanged(monkeypatch):
    from suite.models import spike_storage

    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 3
    grads = {}
    for label, min_elements in (("float", 1 << 62), ("uint8", 0)):
        monkeypatch.setattr(spike_storage, "MIN_ELEMENTS", min_elements)
        torch.manual_seed(1)
        model = create_model("spikformer-1-32", num_classes=4)
        model(x).square().sum().backward()
        grads[label] = [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(grads["float"], grads["uint8"]))
