"""SNNMonitor: exact hand-computed counts, energy numbers, distributed sums, hook hygiene, and a
cross-check of the synaptic-op count against spikingjelly 2.0's op_counter."""

from __future__ import annotations

import copy
import itertools
import logging
import warnings

import pytest
import torch
from torch import nn

from suite.metrics import E_AC_PJ, E_MAC_PJ, SNNMonitor, energy_mj
from suite.models import LIF, count_parameters, create_model, unfused
from suite.models.spikformer import AttentionProduct


def firing_model(name="spikformer-1-32", seed=0, **overrides) -> nn.Module:
    """A tiny Spikformer whose neurons fire at 20-40 %, in eval mode.

    Freshly initialised weights barely fire (every count would be 0 = 0), so BatchNorm is
    calibrated on one random batch and set to gamma=2, beta=1: normalised currents then cross the
    LIF threshold often enough to exercise every counting rule.
    """
    torch.manual_seed(seed)
    overrides = dict(dict(num_classes=10, stem="cifar", time_steps=2), **overrides)
    model = create_model(name, **overrides)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.momentum = None  # running stats = the calibration batch's stats
            nn.init.constant_(module.weight, 2.0)
            nn.init.constant_(module.bias, 1.0)
    cfg = model.config
    with torch.no_grad():
        model.train()(torch.randn(8, cfg.in_channels, *cfg.img_size))
    return model.eval()


@pytest.fixture(scope="module")
def calibrated() -> nn.Module:
    return firing_model()


@pytest.fixture
def model(calibrated) -> nn.Module:
    return copy.deepcopy(calibrated)


def record(model, *inputs, monitor=None):
    monitor = monitor or SNNMonitor(model)
    with torch.no_grad(), monitor.recording():
        for x in inputs:
            model(*x) if isinstance(x, tuple) else model(x)
    return monitor


class TimeMajor(nn.Module):
    """Batch-first wrapper, [B, T, ...] -> inner module on [T, B, ...], as the suite's models are called."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *xs):
        return self.inner(*(x.transpose(0, 1) for x in xs))


# ---------------------------------------------------------------- exact hand computations


def test_linear_sops_are_spike_count_times_fan_out_and_value_two_counts_twice():
    layer = nn.Linear(6, 5)
    x = torch.tensor([[1.0, 0, 1, 0, 0, 1], [0, 2, 0, 0, 1, 0]])  # 3 + 3 spikes (the 2 counts twice)
    stats = record(layer, x).summary()
    assert stats["samples"] == 2
    assert stats["sops_per_sample"] == 6 * 5 / 2
    assert stats["flops_per_sample"] == 0
    assert stats["energy_mj_per_sample"] == pytest.approx(15 * 0.9e-9)
    assert stats["params"] == 6 * 5 + 5


def test_linear_on_real_values_counts_dense_macs_not_sops():
    layer = nn.Linear(6, 5)
    monitor = record(layer, torch.full((3, 6), 0.5))
    stats = monitor.summary()
    assert stats["sops_per_sample"] == 0
    assert stats["flops_per_sample"] == 6 * 5
    assert stats["energy_mj_per_sample"] == pytest.approx(30 * 4.6e-9)
    row = monitor.firing_rate_table().iloc[0]
    assert (row.kind, row.dense_macs_per_sample, row.input_rate) == ("linear", 30, 0)


def test_conv_sops_count_the_weights_each_spike_really_meets():
    conv = nn.Conv2d(2, 3, kernel_size=3, padding=1, bias=False)
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 0, 0] = 1  # corner: 4 of the 9 taps fall inside the zero-padded map
    x[0, 1, 1, 1] = 1  # interior: all 9 taps
    x[0, 1, 3, 1] = 2  # bottom edge, value 2: 6 taps, twice
    expected = (4 + 9 + 2 * 6) * 3
    assert record(conv, x).summary()["sops_per_sample"] == expected

    grouped = nn.Conv2d(4, 6, kernel_size=3, padding=1, groups=2, bias=False)
    y = torch.zeros(1, 4, 4, 4)
    y[0, 3, 0, 0] = 1  # group 1 feeds 6 / 2 = 3 filters
    assert record(grouped, y).summary()["sops_per_sample"] == 4 * 3

    circular = nn.Conv2d(2, 3, kernel_size=3, padding=1, padding_mode="circular", bias=False)
    assert record(circular, x).summary()["sops_per_sample"] == (9 + 9 + 2 * 9) * 3  # wraps around: no border

    strided = nn.Conv2d(1, 2, kernel_size=3, stride=2, padding=1, bias=False)
    z = torch.zeros(1, 1, 5, 5)
    # Output o covers input rows (and cols) 2o-1..2o+1: row 2 lies under o=1 only, row 1 under o=0 and o=1.
    z[0, 0, 2, 2] = 1  # met by 1 output position
    z[0, 0, 1, 1] = 1  # met by 2 x 2 output positions
    assert record(strided, z).summary()["sops_per_sample"] == (1 + 4) * 2


def _event_driven_product_adds(q, k, v) -> int:
    """Accumulates of an event-driven AttentionProduct, by explicit loops over spikes, in the
    association order the module uses (Q (K^T V) when N > d, else (Q K^T) V)."""
    T, B, H, N, d = q.shape
    adds = 0
    for t, b, h in itertools.product(range(T), range(B), range(H)):
        qs, ks, vs = q[t, b, h], k[t, b, h], v[t, b, h]
        if N > d:
            for n, i, j in itertools.product(range(N), range(d), range(d)):
                adds += int(ks[n, i] == 1 and vs[n, j] == 1)  # KV[i, j] += 1 only when both fire
            adds += int(qs.sum()) * d  # each q spike (n, i) adds row KV[i, :] into out[n, :]
        else:
            for i, j, c in itertools.product(range(N), range(N), range(d)):
                adds += int(qs[i, c] == 1 and ks[j, c] == 1)  # A[i, j] += 1 only when both fire
            adds += int(vs.sum()) * N  # each v spike (j, c) adds column A[:, j] into out[:, c]
    return adds


@pytest.mark.parametrize("tokens,width", [(5, 3), (3, 4)], ids=["Q(KtV)", "(QKt)V"])
def test_attention_product_sops_equal_event_driven_accumulates(tokens, width):
    torch.manual_seed(1)
    shape = (2, 2, 2, tokens, width)  # [B, T, heads, N, d], batch-first for the wrapper
    q, k, v = ((torch.rand(shape) < p).float() for p in (0.4, 0.5, 0.3))
    monitor = record(TimeMajor(AttentionProduct(scale=0.125)), (q, k, v))
    expected = _event_driven_product_adds(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
    assert expected > 0
    stats = monitor.summary()
    assert stats["samples"] == 2
    assert stats["sops_per_sample"] * 2 == expected
    assert stats["flops_per_sample"] == 0


def test_lif_firing_rate_is_spikes_over_neurons_times_steps():
    # Constant current 3.0 fires every step; 1.5 charges to 0.75, then 1.125 (fires, resets): every
    # other step; 0.0 never fires.
    model = TimeMajor(LIF(backend="reference"))
    currents = torch.tensor([3.0, 1.5, 0.0, 0.0])
    x = currents.expand(3, 4, 4).contiguous()  # [B=3, T=4, neurons=4]
    monitor = record(model, x)
    stats = monitor.summary()
    assert stats["firing_rates"] == {"inner": (4 + 2 + 0 + 0) / 16}
    row = monitor.firing_rate_table().iloc[0]
    assert (row.kind, row.neurons, row.time_steps, row.spikes) == ("lif", 4, 4, 3 * 6)


# ---------------------------------------------------------------- Spikformer-level figures


def test_spikformer_macs_are_the_encoding_conv_once_per_static_image_plus_the_head(model):
    conv0 = 3 * 4 * 9 * 32 * 32  # C_in x C_out (D/8) x 3x3 x output map, per time step
    head = 32 * 10
    image = torch.randn(2, 3, 32, 32)
    assert record(model, image).summary()["flops_per_sample"] == conv0 + head

    repeated = image.unsqueeze(1).expand(2, 2, 3, 32, 32)  # a sequence whose frames are identical
    assert record(model, repeated).summary()["flops_per_sample"] == conv0 + head
    frames = torch.randn(2, 2, 3, 32, 32)  # distinct frames: the encoding conv runs at every step
    assert record(model, frames).summary()["flops_per_sample"] == 2 * conv0 + head


def test_energy_follows_the_papers_formula(model):
    assert (E_MAC_PJ, E_AC_PJ) == (4.6, 0.9)
    assert energy_mj(1e9, 0) == pytest.approx(4.6)
    assert energy_mj(0, 1e9) == pytest.approx(0.9)
    assert energy_mj(2e6, 3e8) == pytest.approx((4.6e-12 * 2e6 + 0.9e-12 * 3e8) * 1e3)
    with pytest.raises(ValueError, match="non-negative"):
        energy_mj(-1, 0)

    stats = record(model, torch.randn(2, 3, 32, 32)).summary()
    expected = (4.6e-12 * stats["flops_per_sample"] + 0.9e-12 * stats["sops_per_sample"]) * 1e3
    assert stats["energy_mj_per_sample"] == pytest.approx(expected, rel=1e-12)
    assert stats["sops_per_sample"] > 1e6  # the firing model really spikes
    assert 0.1 < stats["mean_firing_rate"] < 0.9
    assert stats["params"] == count_parameters(model) > 0


def test_summary_over_two_batches_equals_the_combined_batch(model):
    a, b = torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    split = record(model, a, b).summary()
    whole = record(model, torch.cat([a, b])).summary()
    assert split["samples"] == whole["samples"] == 5
    for key in ("sops_per_sample", "flops_per_sample", "energy_mj_per_sample", "mean_firing_rate"):
        assert split[key] == pytest.approx(whole[key], rel=1e-6), key
    assert split["firing_rates"] == pytest.approx(whole["firing_rates"], rel=1e-6)


def test_a_float64_model_is_counted_like_its_float32_copy(model):
    # The exactness tests run models in float64; the monitor must count them, and the same spikes.
    x = torch.randn(4, 3, 32, 32)
    single = record(model, x).summary()
    double = record(copy.deepcopy(model).double(), x.double()).summary()
    assert double["samples"] == single["samples"] == 4
    assert double["sops_per_sample"] > 0
    for key in ("sops_per_sample", "flops_per_sample", "mean_firing_rate"):
        assert double[key] == pytest.approx(single[key], rel=1e-3), key


def test_counts_tensor_sums_like_an_all_reduce_and_load_counts_restores_the_summary(model):
    a, b = torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    worker = SNNMonitor(model)
    counts_a = record(model, a, monitor=worker).counts_tensor()
    worker.reset()
    counts_b = record(model, b, monitor=worker).counts_tensor()
    worker.remove()
    assert counts_a.dtype == torch.float64 and counts_a.dim() == 1 and counts_a[0] == 2

    rank0 = SNNMonitor(model)
    rank0.load_counts(counts_a + counts_b)  # what dist.all_reduce(SUM) leaves on every rank
    reduced = rank0.summary()
    rank0.remove()
    whole = record(model, torch.cat([a, b])).summary()
    assert reduced["samples"] == 5
    assert reduced["sops_per_sample"] == pytest.approx(whole["sops_per_sample"], rel=1e-6)
    assert reduced["firing_rates"] == pytest.approx(whole["firing_rates"], rel=1e-6)
    assert torch.equal(SNNMonitor(model).counts_tensor(), torch.zeros_like(counts_a))  # fresh: zeros


def test_load_counts_rejects_a_vector_from_another_model(model):
    monitor = SNNMonitor(model)
    n = monitor.counts_tensor().numel()
    with pytest.raises(ValueError, match=f"1-D tensor of {n} sums"):
        monitor.load_counts(torch.zeros(n + 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=f"1-D tensor of {n} sums"):
        monitor.load_counts(torch.zeros(1, n))
    with pytest.raises(ValueError, match="non-negative"):
        monitor.load_counts(torch.full((n,), -1.0))


def test_only_forward_passes_inside_recording_count(model):
    monitor = SNNMonitor(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(RuntimeError, match="nothing recorded yet"):
        monitor.summary()
    record(model, torch.randn(3, 3, 32, 32), monitor=monitor)
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    assert monitor.summary()["samples"] == 3
    with monitor.recording(), pytest.raises(RuntimeError, match="already active"):
        with monitor.recording():
            pass
    monitor.reset()
    with pytest.raises(RuntimeError, match="nothing recorded yet"):
        monitor.summary()


def test_recording_changes_neither_outputs_nor_gradients_and_remove_leaves_no_trace(model):
    x = torch.randn(2, 3, 32, 32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.zero_grad()
    model(x).square().sum().backward()
    reference_logits = model(x).detach()
    reference_grads = [p.grad.clone() for p in model.parameters()]

    monitor = SNNMonitor(model)
    model.zero_grad()
    with monitor.recording():
        logits = model(x)
        logits.square().sum().backward()  # counting during training must not break autograd
    assert torch.equal(logits.detach(), reference_logits)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), reference_grads))
    assert monitor.summary()["sops_per_sample"] > 0

    monitor.remove()
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, module
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(model(x).detach(), reference_logits)
    with pytest.raises(RuntimeError, match="hooks were removed"):
        with monitor.recording():
            pass


def test_firing_rate_table_lists_every_layer_in_module_order(model):
    monitor = record(model, torch.randn(2, 3, 32, 32))
    table = monitor.firing_rate_table()
    counted = (LIF, nn.Linear, nn.Conv2d, AttentionProduct)
    assert list(table.layer) == [n for n, m in model.named_modules() if isinstance(m, counted)]
    assert set(table.kind) == {"lif", "linear", "conv", "attention"}
    lif = table[table.kind == "lif"].set_index("layer")
    assert lif.rate.to_dict() == monitor.summary()["firing_rates"]
    assert (lif.time_steps == 2).all()
    assert lif.loc["stem.stages.0.lif", "neurons"] == 4 * 32 * 32
    assert lif.loc["blocks.0.attn.q.lif", "neurons"] == 64 * 32
    synapses = table[table.kind != "lif"]
    assert synapses.sops_per_sample.sum() == pytest.approx(monitor.summary()["sops_per_sample"])


def test_a_product_computed_with_einsum_is_reported_not_silently_counted(caplog):
    class EinsumProduct(AttentionProduct):
        def forward(self, q, k, v):
            return torch.einsum("...nd,...md,...me->...ne", q, k, v) * self.scale

    model = TimeMajor(EinsumProduct(0.125))
    spikes = torch.ones(1, 2, 1, 3, 4)
    with caplog.at_level(logging.WARNING, logger="suite.metrics.monitor"):
        record(model, (spikes, spikes, spikes))
    assert "einsum is not counted" in caplog.text


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_counting_on_cuda_never_synchronises_and_matches_cpu(model):
    x = torch.randn(2, 3, 32, 32)
    on_cpu = record(model, x).summary()
    gpu_model = copy.deepcopy(model).cuda()
    monitor = SNNMonitor(gpu_model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            record(gpu_model, x.cuda(), monitor=monitor)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    ours = [f"{w.filename}:{w.lineno} {w.message}" for w in caught if "suite/metrics" in w.filename.replace("\\", "/")]
    assert not ours, "the monitor synchronised with the GPU:\n" + "\n".join(ours)
    assert monitor.counts_tensor().device.type == "cuda"
    on_gpu = monitor.summary()
    # TF32 convolutions on the GPU can flip a few borderline spikes, hence the loose tolerance.
    assert on_gpu["flops_per_sample"] == on_cpu["flops_per_sample"]
    assert on_gpu["sops_per_sample"] == pytest.approx(on_cpu["sops_per_sample"], rel=0.03)
    assert on_gpu["mean_firing_rate"] == pytest.approx(on_cpu["mean_firing_rate"], abs=0.02)


# ---------------------------------------------------------------- cross-check with spikingjelly


@pytest.mark.parametrize(
    "name,overrides,make_input",
    [
        ("spikformer-1-32", {}, lambda: torch.randn(2, 3, 32, 32)),  # N=64 > d=32: Q (K^T V)
        ("spikformer-1-64", {"heads": 1}, lambda: torch.randn(2, 3, 32, 32)),  # N=64 = d: (Q K^T) V
        # dvs stem on 0/1 event frames: the first conv is itself a spike-input (AC) layer.
        ("spikformer-1-32", {"stem": "dvs", "in_channels": 2, "img_size": 32},
         lambda: (torch.rand(2, 2, 2, 32, 32) < 0.3).float()),
    ],
    ids=["cifar-Q(KtV)", "cifar-(QKt)V", "dvs-events"],
)
def test_sops_agree_with_spikingjelly_synop_counter(name, overrides, make_input):
    """The suite's SOPs equal spikingjelly 2.0 `op_counter.SynOpCounter`'s, layer by layer, exactly.

    SynOpCounter runs under `DispatchCounterMode` on our model unchanged and counts, per aten
    mm/addmm/bmm/convolution, the spike-driven weight uses: for a binary input, nnz x fan-out
    (convs: exact weight uses at borders); for binary x binary products (K^T V or Q K^T), the
    coincidences sum(A @ B). Those are our rules too. The definitions differ in one place: an input
    that is not strictly 0/1 counts 0 there, while for us a value v is v coincident spikes. In
    Spikformer, q/k/v and fc1 read the residual stream `x + rpe(x)`, `x + attn(x)` with values
    0/1/2/..., so spikingjelly reports 0 for them; the relation asserted for those layers is
    ours == the sum of SynOpCounter's counts on the unary decomposition of the recorded input,
    x = sum_i [x >= i] (v spikes arriving together are v binary inputs). The encoding conv on
    real-valued images and the head (it reads a real-valued mean) count 0 in both (MAC work for us);
    every other layer must count spikes, so a silent layer cannot make the comparison trivial.
    """
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    model = firing_model(name, **overrides)
    x = make_input()
    monitor = record(model, x)
    table = monitor.firing_rate_table()
    samples = monitor.summary()["samples"]
    ours = {row.layer: row.sops_per_sample * samples for row in table.itertuples() if row.kind != "lif"}

    layer_inputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_pre_hook(lambda m, args, name=layer: layer_inputs.__setitem__(name, args[0].clone()))
        for layer, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d))
    ]
    counter = SynOpCounter()
    with torch.no_grad(), unfused(model), DispatchCounterMode([counter]):  # every module called, hooks see it
        model(x)
    for handle in handles:
        handle.remove()
    scopes = counter.get_counts()
    root = type(model).__name__
    reference = {layer: sum(scopes.get(f"{root}.{layer}", {}).values()) for layer in ours}

    replayed = []
    for layer, inputs in layer_inputs.items():
        integer = bool((inputs == inputs.round()).all())
        binary = bool(((inputs == 0) | (inputs == 1)).all())
        if not integer or binary:
            continue
        assert reference[layer] == 0, layer  # spikingjelly skipped it, as explained above
        for level in range(1, int(inputs.max()) + 1):
            unary = SynOpCounter()
            with torch.no_grad(), DispatchCounterMode([unary]):
                model.get_submodule(layer)((inputs >= level).float())
            reference[layer] += unary.get_total()
        replayed.append(layer)

    assert {"blocks.0.attn.q.linear", "blocks.0.mlp.fc1.linear"} <= set(replayed)
    real_valued_input = {"head"} | ({"stem.stages.0.conv"} if overrides.get("stem") != "dvs" else set())
    assert {layer for layer, count in ours.items() if count == 0} == real_valued_input
    mismatched = {layer: (count, reference[layer]) for layer, count in ours.items() if count != reference[layer]}
    assert not mismatched, f"layer: (ours, spikingjelly) where they differ: {mismatched}"
