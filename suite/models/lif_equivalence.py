"""A LIF backend against the reference LIF, case by case: what the Triton interpreter tests, the
spikingjelly backend's tests and `suite doctor --gpu` (on the device) all check.

The cases cover fp32, fp16 and bf16 inputs, T in {1, 4, 16}, thresholds 0.5 and 1.0 (detach_reset
is the suite's only mode) and a neuron count that is no multiple of the Triton block (1024).

What "equal" means per dtype (suite.models.kernels.lif_triton explains the choice):
- fp32: spikes identical to `lif_reference(x)`, gradients within rtol 1e-5, atol 1e-6 (the
  kernels' sigmoid is not torch's to the last bit; the BPTT recurrence is the same).
- fp16/bf16: the backends under test keep an fp32 membrane, so the truth is the reference run on
  x.float(): spikes identical to it rounded to x's dtype; gradients within one rounding of it,
  rtol = the dtype's machine epsilon (2^-10 fp16, 2^-7 bf16), atol 1e-6 (fp16 subnormals).
  The comparison with the reference run in the input dtype is reported (`input_dtype_mismatches`,
  near-threshold spikes flipped by its per-step rounding), not required to be zero.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import torch

from suite.models.kernels.reference import lif_reference

TAU, ALPHA = 2.0, 4.0
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TIME_STEPS = (1, 4, 16)
THRESHOLDS = (0.5, 1.0)
NEURONS = (3, 700)  # 2100 per step: two full Triton blocks and a partial one
GRAD_TOLERANCE = {  # (rtol, atol) against the fp32 reference's gradient rounded to the dtype
    "float32": (1e-5, 1e-6),
    "float16": (2.0**-10, 1e-6),
    "bfloat16": (2.0**-7, 1e-6),
}


@dataclasses.dataclass(frozen=True)
class Case:
    dtype: str
    time_steps: int
    v_threshold: float
    neurons: tuple[int, ...] = NEURONS


def all_cases() -> list[Case]:
    return [Case(d, t, v) for d, t, v in itertools.product(DTYPES, TIME_STEPS, THRESHOLDS)]


def _currents(case: Case, device: torch.device, seed: int) -> torch.Tensor:
    """Inputs that make a fair share of neurons fire and a fair share stay silent."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(case.time_steps, *case.neurons, generator=generator) * 1.5 + 0.6
    return x.to(DTYPES[case.dtype]).to(device)


def check_case(backend: Callable[..., torch.Tensor], case: Case, device: str | torch.device, seed: int = 0) -> dict:
    """Run `backend` and the reference on the same inputs and upstream gradient; the report of
    one case (JSON-ready)."""
    device = torch.device(device)
    dtype = DTYPES[case.dtype]
    x = _currents(case, device, seed).requires_grad_(True)
    x_ref = x.detach().float().requires_grad_(True)
    spikes = backend(x, TAU, case.v_threshold, ALPHA)
    expected = lif_reference(x_ref, TAU, case.v_threshold, ALPHA)
    generator = torch.Generator().manual_seed(seed + 1)
    grad = torch.randn(spikes.shape, generator=generator).to(dtype).to(device)
    spikes.backward(grad)
    expected.backward(grad.float())
    with torch.no_grad():
        inference = backend(x.detach(), TAU, case.v_threshold, ALPHA)
        in_dtype = lif_reference(x.detach(), TAU, case.v_threshold, ALPHA)
    expected_spikes = expected.detach().to(dtype)
    expected_grad = x_ref.grad.to(dtype).float()
    rtol, atol = GRAD_TOLERANCE[case.dtype]
    excess = (x.grad.float() - expected_grad).abs() - (atol + rtol * expected_grad.abs())
    return {
        **dataclasses.asdict(case),
        "device": str(device),
        "spikes_dtype_ok": spikes.dtype == dtype and x.grad.dtype == dtype,
        "spike_mismatches": int((spikes.detach() != expected_spikes).sum()),
        "inference_spike_mismatches": int((inference != expected_spikes).sum()),
        "input_dtype_mismatches": int((in_dtype != expected_spikes).sum()),
        "firing_rate": float(expected.detach().mean()),
        "grad_max_abs_err": float((x.grad.float() - expected_grad).abs().max()),
        "grad_tolerance": [rtol, atol],
        "grad_within_tolerance": bool((excess <= 0).all()),
        "grad_nonzero": bool(x.grad.abs().sum() > 0),
    }


def passed(result: dict) -> bool:
    return (
        result["spikes_dtype_ok"]
        and result["spike_mismatches"] == 0
        and result["inference_spike_mismatches"] == 0
        and result["grad_within_tolerance"]
        and result["grad_nonzero"]
    )


def check_backend(backend: Callable[..., torch.Tensor], device: str | torch.device, cases=None) -> list[dict]:
    """Every case's report, each with its verdict under "ok"."""
    results = []
    for case in cases if cases is not None else all_cases():
        result = check_case(backend, case, device)
        result["ok"] = passed(result)
        results.append(result)
    return results
