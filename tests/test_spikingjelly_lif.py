"""LIF backend "spikingjelly" (spikingjelly 2.0's registered LIF kernels, here their CPU path)
passes the same equivalence cases as the Triton kernel (suite.models.lif_equivalence) and gives a
model the reference backend's outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from suite.models import create_model
from suite.models.lif_equivalence import all_cases, check_case, passed
from suite.models.kernels.dispatch import BACKENDS, BackendChoice
from suite.models.kernels.lif_spikingjelly import lif_spikingjelly
from suite.models.kernels.reference import lif_reference
from suite.models.neuron import LIF


def test_registered_under_its_name_and_not_picked_by_auto():
    assert BACKENDS["spikingjelly"] is lif_spikingjelly
    # h = 1.0 fires and resets to 0; then 0.5, then 0.75: silent (v_threshold 1, tau 2)
    assert LIF(backend="spikingjelly")(torch.tensor([[2.0], [1.0], [1.0]])).tolist() == [[1.0], [0.0], [0.0]]
    assert BackendChoice("auto").kernel_on(torch.device("cpu")) is not lif_spikingjelly


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: f"{c.dtype}-T{c.time_steps}-th{c.v_threshold}")
def test_spikingjelly_lif_equals_the_reference(case):
    result = check_case(lif_spikingjelly, case, "cpu")
    assert result["spike_mismatches"] == 0 and result["inference_spike_mismatches"] == 0, result
    assert 0.05 < result["firing_rate"] < 0.95
    assert result["grad_within_tolerance"], result
    assert passed(result)


def test_spikingjelly_gradient_equals_the_reference_in_float64():
    """Same BPTT graph (hard reset to 0, detach_reset, sigmoid surrogate), not an approximation."""
    torch.manual_seed(3)
    x = (torch.randn(5, 64, dtype=torch.float64) * 1.5 + 0.6).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    grad = torch.randn(5, 64, dtype=torch.float64)
    lif_spikingjelly(x, 2.0, 1.0, 4.0).backward(grad)
    lif_reference(x_ref, 2.0, 1.0, 4.0).backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-14)
    assert x.grad.abs().sum() > 0


def test_a_model_on_the_spikingjelly_backend_gives_the_reference_logits_and_gradients():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16) * 3
    models = {}
    for backend in ("reference", "spikingjelly"):
        torch.manual_seed(1)
        models[backend] = create_model("spikformer-1-32", num_classes=4, img_size=16, time_steps=2,
                                       lif_backend=backend).train()
    outputs = {name: model(x) for name, model in models.items()}
    assert torch.equal(outputs["reference"], outputs["spikingjelly"])
    for out in outputs.values():
        out.square().sum().backward()
    pairs = zip(models["reference"].named_parameters(), models["spikingjelly"].parameters())
    for (name, a), b in pairs:
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_spikingjelly_keeps_an_fp32_membrane_per_step_for_backward():
    """One reason 'auto' prefers the suite's kernels: on its CPU path spikingjelly keeps fp32
    tensors of every step for backward (at least twice the bytes of a bf16 input), the suite's
    fused kernels keep only the input (test_triton_interpreter, test_fast_lif)."""
    saved = []
    x = torch.randn(4, 2100, dtype=torch.bfloat16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
        lif_spikingjelly(x, 2.0, 1.0, 4.0)
    assert sum(saved) >= 2 * x.numel() * x.element_size()
