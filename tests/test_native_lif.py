"""The hand-written CPU kernels (suite/models/kernels/csrc/native_cpu.cpp) against the torch code they replace.

tests/test_fast_lif.py runs the fused LIF and BatchNorm + LIF through all three kernel kinds
(eager, compiled, native); this file covers what is particular to the native ones: bfloat16,
layouts and sizes that exercise the tiling, tau that is not a power of two, threads, and the
build: caching, and falling back to torch code when no compiler is there.
"""

from __future__ import annotations

import logging

import pytest
import torch

from suite.models.kernels import native_cpu
from suite.models.kernels.fused_bn_lif import bn_lif_backward_steps, bn_lif_forward_steps
from suite.models.kernels.fused_lif import KERNELS, LIF_FORWARD, lif_forward_steps, lif_fused
from suite.models.kernels.reference import lif_reference

pytestmark = pytest.mark.skipif(not native_cpu.enabled(), reason="SUITE_NATIVE_KERNELS=0 in the environment")


@pytest.fixture(autouse=True)
def native_kernels(monkeypatch):
    assert native_cpu.available(), "the native CPU kernels did not build: install g++ or set CXX (see the log)"
    monkeypatch.setattr(KERNELS, "native_enabled", True)


def currents(*shape, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return (torch.randn(*shape) * 1.5 + 0.6).to(dtype)


@pytest.mark.parametrize("shape", [(4, 1, 1000), (5, 3, 129), (2, 7, 128, 3), (1, 1)])
@pytest.mark.parametrize("tau", [2.0, 3.0])  # 3.0 takes the true-division path
def test_native_lif_equals_reference_in_float32(shape, tau):
    x = currents(*shape).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    spikes, expected = lif_fused(x, tau, 1.0, 4.0), lif_reference(x_ref, tau, 1.0, 4.0)
    assert torch.equal(spikes, expected)
    grad = torch.randn_like(spikes)
    spikes.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_native_lif_in_bfloat16_rounds_like_torch_and_gives_the_reference_spikes():
    x = currents(4, 3, 517, dtype=torch.bfloat16).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    spikes, expected = lif_fused(x, 2.0, 1.0, 4.0), lif_reference(x_ref, 2.0, 1.0, 4.0)
    assert spikes.dtype == torch.bfloat16 and torch.equal(spikes, expected)
    grad = torch.randn_like(spikes)
    spikes.backward(grad)
    expected.backward(grad)
    # the native backward computes in float32, the reference in bfloat16 steps: about 1% apart
    torch.testing.assert_close(x.grad.float(), x_ref.grad.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 300, 7, 1), (3, 5, 6, 50), (4, 2, 200, 1)])
def test_native_batchnorm_lif_equals_its_torch_twin(dtype, shape):
    torch.manual_seed(3)
    z = (torch.randn(*shape) * 2 + 0.7).to(dtype)
    C = shape[2]
    weight, bias = torch.rand(C) + 1.0, torch.rand(C) + 0.5  # a fair share of neurons fires
    spikes, mean, var = native_cpu.native_bn_lif_forward_steps(z, weight, bias, 1e-5, 2.0, 1.0)
    spikes_t, mean_t, var_t = bn_lif_forward_steps(z, weight, bias, 1e-5, 2.0, 1.0)
    torch.testing.assert_close(mean, mean_t, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(var, var_t, rtol=1e-5, atol=1e-6)
    assert spikes.dtype == dtype
    torch.testing.assert_close(spikes, spikes_t, rtol=0, atol=0)  # no spike may differ
    assert 0.05 < spikes.float().mean().item() < 0.95
    grad = torch.randn(*shape).to(dtype)
    invstd = torch.rsqrt(var_t + 1e-5)
    native = native_cpu.native_bn_lif_backward_steps(grad, z, mean_t, invstd, weight, bias, 2.0, 1.0, 4.0, True)
    torch_twin = bn_lif_backward_steps(grad, z, mean_t, invstd, weight, bias, 2.0, 1.0, 4.0, True)
    rtol = 1e-4 if dtype == torch.float32 else 1e-2  # bfloat16: one rounding of grad_z apart
    for got, want in zip(native[:3], torch_twin[:3]):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=rtol)
    # channel sums of dL/dz (a pre-BN bias's gradient) nearly cancel: bound them by the rounding of the terms
    bound = native[0].float().abs().sum(dim=(0, 1, 3)) * (1e-6 if dtype == torch.float32 else 2**-7)  # 2 roundings
    assert native[3].shape == (C,) and bool(((native[3] - torch_twin[3]).abs() <= bound + 1e-6).all())


def test_native_statistics_survive_a_large_mean():
    """The per-channel pivot keeps E[d^2] - E[d]^2 exact enough when mean >> std."""
    z = torch.randn(4, 4096, 3, 1, dtype=torch.float64) * 0.01 + 1000.0
    _, mean, var = native_cpu.native_bn_lif_forward_steps(z.float(), torch.ones(3), torch.zeros(3), 1e-5, 2.0, 1.0)
    ref_var, ref_mean = torch.var_mean(z.float().double(), dim=(0, 1, 3), correction=0)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-7, atol=1e-5)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-3, atol=1e-9)


def test_native_kernels_give_the_same_results_with_one_or_two_threads():
    z = currents(4, 64, 96, 1)
    weight, bias = torch.rand(96) + 0.5, torch.randn(96) * 0.3
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(
                (native_cpu.native_lif_forward_steps(z.view(4, -1), 2.0, 1.0),
                 *native_cpu.native_bn_lif_forward_steps(z, weight, bias, 1e-5, 2.0, 1.0))
            )
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results):
        torch.testing.assert_close(one, two, rtol=1e-6, atol=1e-7)


def test_the_library_is_built_once_and_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_KERNEL_CACHE", str(tmp_path))
    first = native_cpu._Library()
    assert first.get() is not None
    built = list(tmp_path.glob("native_cpu-*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("*.so.tmp*"))
    stamp = built[0].stat().st_mtime_ns
    assert native_cpu._Library().get() is not None
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_without_a_compiler_the_torch_kernels_take_over(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SUITE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    monkeypatch.setattr(native_cpu, "LIBRARY", native_cpu._Library())
    x = currents(4, 100)
    with caplog.at_level(logging.WARNING, logger="suite.models.kernels.native_cpu"):
        assert not native_cpu.available()
        spikes = KERNELS.run(LIF_FORWARD, x, 2.0, 1.0)
    assert "no-such-compiler-xyz" in caplog.text and "torch kernels" in caplog.text
    assert torch.equal(spikes, lif_forward_steps(x, 2.0, 1.0))
    assert not list(tmp_path.glob("*.so"))


def test_a_compile_error_names_the_source_and_the_compiler_output(tmp_path, monkeypatch):
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native_cpu, "SOURCES", [broken])
    with pytest.raises(native_cpu.NativeKernelError, match="broken.cpp") as err:
        native_cpu.build(tmp_path / "out.so")
    assert "error" in str(err.value) and not list(tmp_path.glob("*.so"))


def test_the_uint8_copy_written_by_the_forward_is_what_backward_keeps(monkeypatch):
    from suite.models import spike_storage

    monkeypatch.setattr(spike_storage, "MIN_ELEMENTS", 0)
    x = currents(4, 2, 6, 5, 5).requires_grad_(True)
    with spike_storage.compact_saved_spikes():
        spikes = lif_fused(x, 2.0, 1.0, 4.0)
    view = spikes.flatten(0, 1)  # what the next conv would save
    twin = spike_storage._twin_view(view)
    assert twin is not None and twin.dtype == torch.uint8 and twin.shape == view.shape
    assert torch.equal(twin.float(), view.detach())
    packed = spike_storage._pack(view)
    assert packed[2].data_ptr() == twin.data_ptr()  # no second conversion
    assert torch.equal(spike_storage._unpack(packed), view)
    with torch.no_grad():
        spikes[0, 0, 0, 0, 0] = 1.0 - spikes[0, 0, 0, 0, 0]  # modified after the forward: the copy is stale
    assert spike_storage._twin_view(view) is None
    assert torch.equal(spike_storage._unpack(spike_storage._pack(view)), view)


def test_no_uint8_copy_is_written_outside_training():
    from suite.models import spike_storage

    x = currents(4, 100_000)
    with torch.no_grad():
        spikes = lif_fused(x, 2.0, 1.0, 4.0)
    assert spike_storage._twin_view(spikes) is None


def test_a_model_names_what_its_lif_layers_run_on(tmp_path, monkeypatch):
    from suite.models import create_model
    from suite.models.neuron import describe_backends

    cpu = torch.device("cpu")
    model = create_model("spikformer-1-32")
    assert describe_backends(model, cpu) == f"fused_cpu (native C++ kernels {native_cpu.LIBRARY.path})"
    assert native_cpu.LIBRARY.path.is_file()
    assert describe_backends(create_model("spikformer-1-32", lif_backend="reference"), cpu) == "reference (per-step autograd)"
    monkeypatch.setattr(KERNELS, "native_enabled", False)
    assert describe_backends(model, cpu) == "fused_cpu (torch kernels; native kernels off)"
    monkeypatch.setattr(KERNELS, "native_enabled", True)
    monkeypatch.setenv("SUITE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    monkeypatch.setattr(native_cpu, "LIBRARY", native_cpu._Library())
    assert describe_backends(model, cpu) == (
        "fused_cpu (torch kernels; native kernels unavailable: no C++ compiler 'no-such-compiler-xyz' on PATH "
        "(install g++ or set CXX))"
    )


def test_suite_native_kernels_0_turns_the_native_kernels_off(monkeypatch):
    from suite.models.kernels.fused_lif import _Kernels

    monkeypatch.setenv("SUITE_NATIVE_KERNELS", "0")
    assert _Kernels().native_enabled is False and native_cpu.status() == "native kernels off (SUITE_NATIVE_KERNELS)"


def test_a_missing_header_is_named_and_the_torch_kernels_take_over(tmp_path, monkeypatch, caplog):
    """What an installed suite whose package data lacks storage.h does (tests/test_wheel.py builds the real wheel)."""
    monkeypatch.setenv("SUITE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(native_cpu, "HEADERS", [tmp_path / "storage.h"])
    monkeypatch.setattr(native_cpu, "LIBRARY", native_cpu._Library())
    with caplog.at_level(logging.WARNING, logger="suite.models.kernels.native_cpu"):
        assert not native_cpu.available()
    assert "kernel file storage.h is missing from the installed suite" in native_cpu.status()
    assert "using torch kernels instead" in caplog.text and not list(tmp_path.glob("*.so"))
