"""The shared backbone: registry, exact parameter counts, LIF equivalence, official checkpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from spikingjelly.activation_based import neuron, surrogate

from suite.errors import UnknownNameError, UsageError
from suite.models import count_parameters, create_model, list_models, load_official_state_dict
from suite.models.kernels.dispatch import BACKENDS
from suite.models.kernels.fused_lif import KERNELS
from suite.models.neuron import LIF
from tests.helpers.official_reference import official_forward, official_state_dict, recording_firing_rates

PAPER_PARAMS = [  # (variant, stem, classes, parameters of the official code's used parameters)
    ("spikformer-4-384", "cifar", 10, 9_324_730),
    ("spikformer-2-384", "cifar", 10, 5_765_050),
    ("spikformer-4-256", "cifar", 10, 4_155_178),
    ("spikformer-4-384", "cifar", 100, 9_359_380),
    ("spikformer-8-384", "imagenet", 1000, 16_816_024),
    ("spikformer-6-512", "imagenet", 1000, 23_373_352),
    ("spikformer-8-512", "imagenet", 1000, 29_689_384),
    ("spikformer-10-512", "imagenet", 1000, 36_005_416),
    ("spikformer-8-768", "imagenet", 1000, 66_338_632),
    ("spikformer-2-256", "dvs", 10, 2_566_666),
    ("spikformer-2-256", "dvs", 11, 2_566_923),
]


@pytest.mark.parametrize("name,stem,classes,params", PAPER_PARAMS)
def test_paper_parameter_counts(name, stem, classes, params):
    with torch.device("meta"):
        model = create_model(name, num_classes=classes)
    assert model.config.stem == stem
    assert count_parameters(model) == params


@pytest.mark.parametrize("name", list_models())
def test_every_registered_variant_builds_with_paper_shapes(name):
    with torch.device("meta"):
        model = create_model(name)
    cfg = model.config
    assert cfg.dim % cfg.heads == 0
    # The paper's head counts: 12 for cifar 4-384, 8 for imagenet 8-512, 12 for 8-768, 16 for dvs 2-256.
    expected_heads = {"spikformer-4-384": 12, "spikformer-8-512": 8, "spikformer-8-768": 12, "spikformer-2-256": 16}
    if name in expected_heads:
        assert cfg.heads == expected_heads[name]


@pytest.mark.parametrize(
    "name,overrides,x_shape",
    [
        ("spikformer-1-32", dict(stem="cifar", time_steps=2), (3, 3, 32, 32)),
        ("spikformer-1-64", dict(stem="imagenet", img_size=64, time_steps=2), (2, 3, 64, 64)),
        ("spikformer-2-32", dict(stem="dvs", img_size=32, time_steps=3), (2, 3, 2, 32, 32)),
    ],
)
def test_tiny_variants_forward_backward_finite(name, overrides, x_shape):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **overrides)
    x = torch.rand(*x_shape) * 3
    logits = model(x)
    assert logits.shape == (x_shape[0], 5)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(x_shape[0]) % 5)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_token_count_per_stem():
    for stem, size, tokens in [("cifar", 32, 64), ("imagenet", 224, 196), ("dvs", 128, 64)]:
        model = create_model("spikformer-1-32", stem=stem, img_size=size, time_steps=1).eval()
        seen = {}
        model.blocks[0].register_forward_hook(lambda m, i, o: seen.update(shape=o.shape) or None)
        channels = 2 if stem == "dvs" else 3
        with torch.no_grad():
            model(torch.rand(1, channels, size, size))
        assert seen["shape"] == (1, 1, tokens, 32), stem


@pytest.mark.parametrize("v_threshold", [1.0, 0.5])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_lif_matches_spikingjelly(v_threshold, backend):
    torch.manual_seed(1)
    x = (torch.randn(6, 4, 257) * 1.5 + 0.6).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    ours = LIF(v_threshold=v_threshold, backend=backend)(x)
    theirs = neuron.LIFNode(
        tau=2.0, v_threshold=v_threshold, detach_reset=True, step_mode="m", surrogate_function=surrogate.Sigmoid(alpha=4.0)
    )(x_ref)
    assert torch.equal(ours, theirs), "spikes differ from spikingjelly's LIFNode"
    assert 0.05 < ours.mean().item() < 0.95  # the comparison exercised both spiking and silence
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def calibrated(model, x):
    """Eval mode with BatchNorm statistics taken from `x`, so that every layer really spikes."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: one batch sets the statistics to its own
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def test_same_input_twice_gives_same_output_no_state_leak():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 4
    model = calibrated(create_model("spikformer-1-32", num_classes=4, time_steps=3), x)
    with torch.no_grad():
        first, second = model(x), model(x)
        model(torch.rand(5, 3, 32, 32) * 4)  # a different batch in between must not matter either
        third = model(x)
    assert first.abs().sum() > 0
    assert torch.equal(first, second) and torch.equal(first, third)


def test_static_input_equals_its_repetition_as_a_sequence():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 4
    model = calibrated(create_model("spikformer-1-32", num_classes=4, time_steps=4), x)
    with torch.no_grad():
        static = model(x)
        sequence = model(x.unsqueeze(1).repeat(1, 4, 1, 1, 1))
        other = model(torch.rand(2, 4, 3, 32, 32) * 4)
    torch.testing.assert_close(static, sequence)
    assert not torch.allclose(static, other)


def test_bad_names_list_valid_ones():
    for bad in ["spikformer-x", "vit-4-384", "spikformer-4-380", "spikformer-0-64"]:
        with pytest.raises(UnknownNameError) as err:
            create_model(bad)
        assert "spikformer-4-384" in str(err.value) and bad in str(err.value)
    with pytest.raises(UnknownNameError) as err:
        create_model("spikformer-4-384", stem="resnet")
    assert "cifar" in str(err.value) and "imagenet" in str(err.value) and "dvs" in str(err.value)
    with pytest.raises(UnknownNameError) as err:
        create_model("spikformer-4-384", dropout=0.1)
    assert "attn_scale" in str(err.value)


# Spikes per neuron and time step that every layer of the official-equivalence inputs must reach
# (observed: 1.8%-36%): below 1% a layer is close to silent, above 50% close to saturated.
FIRING_BAND = (0.01, 0.5)


def official_lif_layers(depth: int) -> list[str]:
    """The official model's LIF layers in forward order (names from its model.py)."""
    stem = ["patch_embed.proj_lif", "patch_embed.proj_lif1", "patch_embed.proj_lif2", "patch_embed.proj_lif3",
            "patch_embed.rpe_lif"]  # fmt: skip
    per_block = ["attn.q_lif", "attn.k_lif", "attn.v_lif", "attn.attn_lif", "attn.proj_lif", "mlp.fc1_lif", "mlp.fc2_lif"]
    return stem + [f"block.{b}.{name}" for b in range(depth) for name in per_block]


@pytest.mark.parametrize(
    "overrides,error,message",
    [
        (dict(lif_backend="torch"), UnknownNameError, "unknown LIF backend 'torch'; valid backends: auto, "),
        (dict(heads=5), UsageError, "heads 5 does not divide dim 32; valid head counts: 1, 2, 4, 8, 16, 32"),
        (dict(time_steps=0), UsageError, "time_steps must be a positive integer, got 0"),
        (dict(img_size=(32,)), UsageError, "img_size must be two positive integers"),
        (dict(mlp_ratio=0), UsageError, "mlp_ratio must be a positive number"),
    ],
)
def test_bad_options_fail_when_the_model_is_made_not_at_its_first_forward(overrides, error, message):
    with pytest.raises(error) as err:
        create_model("spikformer-1-32", **overrides)
    assert message in str(err.value)


def test_valid_backends_are_the_registry_s_and_a_bad_one_is_refused_by_lif_itself():
    from suite.models.kernels.dispatch import backend_names

    assert backend_names() == ["auto", *sorted(BACKENDS)]  # one list: whatever registered itself
    with pytest.raises(UnknownNameError) as err:
        LIF(backend="torch")
    assert ", ".join(backend_names()) in str(err.value)
    for name in [n for n in backend_names() if not n.endswith("_cuda")]:  # every CPU one builds a model that runs
        model = create_model("spikformer-1-32", num_classes=3, img_size=16, time_steps=1, lif_backend=name).eval()
        with torch.no_grad():
            assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3)


def test_the_backend_is_chosen_when_built_and_switched_only_by_set_lif_backend(monkeypatch):
    from suite.models.kernels import dispatch
    from suite.models.kernels.reference import lif_reference

    cpu = torch.device("cpu")
    model = create_model("spikformer-1-32", num_classes=3, img_size=16, time_steps=2).eval()
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    monkeypatch.setitem(dispatch.BACKENDS, "fused", lif_reference)  # a later registry change: built layers keep theirs
    assert all(lif.kernel_on(cpu) is dispatch.BACKENDS["fused_cpu"] for lif in lifs)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        fused = model(x)
        with pytest.raises(UnknownNameError):
            model.set_lif_backend("torch")
        assert model.config.lif_backend == "auto" and all(lif.backend == "auto" for lif in lifs)  # nothing changed
        model.set_lif_backend("reference")
        assert model.config.lif_backend == "reference"
        assert all(lif.kernel_on(cpu) is lif_reference for lif in lifs) and "backend='reference'" in repr(lifs[0])
        torch.testing.assert_close(model(x), fused, rtol=0, atol=0)  # same logits on either backend (eval mode)


@pytest.mark.parametrize(
    "flavour,name,overrides,heads,scale,x_shape",
    [
        ("cifar10", "spikformer-2-64", dict(stem="cifar", num_classes=10, time_steps=4), 2, 0.125, (3, 3, 32, 32)),
        ("imagenet", "spikformer-2-128", dict(stem="imagenet", img_size=64, num_classes=7, time_steps=4), 2, 0.125,
         (2, 3, 64, 64)),
        ("cifar10dvs", "spikformer-2-64", dict(stem="dvs", num_classes=10, time_steps=4, attn_scale=0.25), 4, 0.25,
         (2, 4, 2, 128, 128)),
    ],
)
def test_official_checkpoint_gives_official_logits(flavour, name, overrides, heads, scale, x_shape, monkeypatch):
    """In float64 the suite's model computes the official forward's logits exactly, on an input
    where every neuron layer fires inside FIRING_BAND (two silent networks would agree trivially)."""
    # float64 has no native kernel; its eager LIF twin is the same arithmetic without the seconds
    # torch.compile would spend on the dvs stem's 1M-element layers (tests/test_fast_lif.py covers it).
    monkeypatch.setattr(KERNELS, "compile_enabled", False)
    model = create_model(name, heads=heads, **overrides).eval()
    cfg = model.config
    sd = official_state_dict(flavour, cfg.depth, cfg.dim, cfg.in_channels, cfg.num_classes, seed=3)
    load_official_state_dict(model, sd)
    model.double()
    sd = {key: value.double() if value.is_floating_point() else value for key, value in sd.items()}
    torch.manual_seed(5)
    x = torch.rand(*x_shape, dtype=torch.float64) * 2
    with recording_firing_rates() as rates:
        expected = official_forward(x, sd, flavour, cfg.depth, heads, scale, cfg.time_steps)
    layers = official_lif_layers(cfg.depth)
    assert len(rates) == len(layers)
    outside = {layer: rate for layer, rate in zip(layers, rates) if not FIRING_BAND[0] <= rate <= FIRING_BAND[1]}
    assert not outside, f"official layers firing outside {FIRING_BAND}: {outside}"
    with torch.no_grad():
        got = model(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_official_loader_rejects_a_mismatched_checkpoint():
    model = create_model("spikformer-2-64", num_classes=10)
    sd = official_state_dict("cifar10", depth=1, dim=64, in_channels=3, num_classes=10)
    with pytest.raises(Exception, match="missing"):
        load_official_state_dict(model, sd)


@pytest.mark.slow
def test_models_command_prints_the_table():
    out = subprocess.run(
        [sys.executable, "-m", "suite", "models"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for name in list_models():
        assert name in out
    assert "9,324,730" in out and "66,338,632" in out and "74.81" in out
