"""NeuroBench's metrics on the suite's Spikformer, side by side with the suite's own counts.

The relation asserted here is the one suite/metrics/neurobench_probe.py and the README state:
NeuroBench's effective ACs are exactly the suite's SOPs of the Linear/Conv layers whose input is
0/1 spikes; the suite's SOPs add the attention products and the residual-stream layers (inputs
0/1/2/...), which NeuroBench counts as MACs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite import schema
from suite.engine.evaluate import evaluate
from suite.metrics import SNNMonitor
from suite.task_registry import get_task

pytest.importorskip("neurobench", reason="the optional neurobench extra is not installed")

from suite.metrics.neurobench_probe import NeuroBenchProbe  # noqa: E402

EVAL_SIZE = 6
# Layers of spikformer-L-D whose input is 0/1 spikes (a LIF's output, or a max-pool of one).
SPIKE_FED = ("stem.stages.1.conv", "stem.stages.2.conv", "stem.stages.3.conv", "stem.rpe.conv", ".attn.proj.linear", ".mlp.fc2.linear")
RESIDUAL_FED = (".attn.q.linear", ".attn.k.linear", ".attn.v.linear", ".mlp.fc1.linear")


def _firing_model(depth: int = 2) -> nn.Module:
    """A tiny Spikformer whose neurons fire often (BN scaled up), so every count is non-trivial."""
    from suite.models import create_model

    torch.manual_seed(0)
    model = create_model(f"spikformer-{depth}-32", **get_task("cifar10").model_kwargs(2))
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.constant_(module.weight, 2.0)
            nn.init.constant_(module.bias, 1.0)
    return model.eval()


def _record_spike_inputs(model: nn.Module) -> tuple[dict, list]:
    """Pre-hooks recording, per Linear/Conv layer, whether its input was all 0/1 spikes. Only a
    layer's first call counts: NeuroBench replays each layer on a deep copy, hooks included."""
    binary, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            def hook(m, args, name=name):
                binary.setdefault(name, bool(((args[0] == 0) | (args[0] == 1)).all()))
            handles.append(module.register_forward_pre_hook(hook))
    return binary, handles


def test_neurobench_counts_beside_the_suite_sops_on_a_tiny_model():
    model = _firing_model()
    dataset = get_task("cifar10").build_dataset("eval", data="synthetic", time_steps=2, synthetic_size=EVAL_SIZE)
    monitor = SNNMonitor(model)
    probe = NeuroBenchProbe(model)
    binary, handles = _record_spike_inputs(model)
    # One batch: each layer is called once, so each layer's input is either spikes or not.
    result = evaluate(model, dataset, batch_size=EVAL_SIZE, device=torch.device("cpu"), monitor=monitor, on_batch=probe)
    for handle in handles:
        handle.remove()
    nb = probe.metrics()
    probe.close()
    table = monitor.firing_rate_table()
    summary = monitor.summary()

    sops = table.set_index("layer")["sops_per_sample"].dropna()
    spike_input = [name for name in sops.index if binary.get(name)]
    multi_spike = [name for name in sops.index if binary.get(name) is False and name.endswith(RESIDUAL_FED)]
    attention = [name for name in sops.index if name.endswith(".attn.product")]
    # Layers fed by a LIF always see 0/1 spikes; here the residual stream holds coincident spikes (2s)
    # in some layers, which the suite counts as SOPs and NeuroBench as MACs.
    assert {name for name in sops.index if name.endswith(SPIKE_FED)} <= set(spike_input)
    assert multi_spike and len(attention) == 2
    assert nb[schema.M_NB_EFFECTIVE_ACS] > 0
    # Exact: both sides count whole accumulates; the totals (per-sample figures x samples) are equal integers.
    per_layer_totals = (sops[spike_input] * EVAL_SIZE).round()
    assert ((sops[spike_input] * EVAL_SIZE - per_layer_totals).abs() < 1e-6).all()
    assert round(nb[schema.M_NB_EFFECTIVE_ACS] * EVAL_SIZE) == int(per_layer_totals.sum())
    rest = sops[multi_spike].sum() + sops[attention].sum()
    assert summary["sops_per_sample"] == pytest.approx(nb[schema.M_NB_EFFECTIVE_ACS] + rest, rel=1e-12)
    assert summary["sops_per_sample"] > nb[schema.M_NB_EFFECTIVE_ACS]

    # Activation sparsity is 1 - (all spikes / all neuron-steps) over the same LIF layers.
    lif = table[table["kind"] == "lif"]
    spikes, neuron_steps = lif["spikes"].sum(), (lif["neurons"] * lif["time_steps"]).sum() * EVAL_SIZE
    assert nb[schema.M_NB_ACTIVATION_SPARSITY] == pytest.approx(1 - spikes / neuron_steps, rel=1e-12)
    assert nb[schema.M_NB_ACCURACY] * 100 == pytest.approx(result.top1, rel=1e-6)  # NeuroBench means in float32
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert nb[schema.M_NB_FOOTPRINT] == params * 4 + buffers
    assert nb[schema.M_NB_CONNECTION_SPARSITY] == 0.0  # no weight is exactly zero
    assert nb[schema.M_NB_DENSE] >= nb[schema.M_NB_EFFECTIVE_ACS] + nb[schema.M_NB_EFFECTIVE_MACS]
    # NeuroBench's hooks are gone with the probe (and the monitor's with it): the model is as it was.
    monitor.remove()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules() if m is not model)
