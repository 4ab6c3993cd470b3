"""The registry of LIF backends and the one place that decides which kernel a LIF layer runs.

Backends, name -> fn(x, tau, v_threshold, alpha) -> spikes, all listed here (nothing registers
itself on import):
- "reference": the per-step autograd loop (suite.models.kernels.reference), the ground truth;
- "fused" ("fused_cpu" names the same kernels): one pass over T (fused_lif), native C++ on CPU,
  torch code (compiled where it pays) on other devices;
- "fused_cuda": the Triton kernels (lif_triton), registered when CUDA and triton are available;
- "spikingjelly": spikingjelly 2.0's own LIF kernels (lif_spikingjelly).

'auto' stands for the registered "fused_<device type>" backend on that device type, unless it is
excluded from 'auto' (`AUTO_EXCLUDED`: the Triton kernels whose source is not the verified one),
and for "fused" everywhere else.

Chosen once: a LIF layer resolves its name into a `BackendChoice` when it is built, or when it
is switched explicitly (`LIF.set_backend`, `suite.models.fast_paths.set_lif_backend`); forward then
only picks the kernel for its input's device type from that choice. `describe` says what a choice
runs on a device: the line each run logs.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from suite.models.kernels import native_cpu
from suite.models.kernels.fused_lif import KERNELS, lif_fused
from suite.models.kernels.lif_spikingjelly import lif_spikingjelly
from suite.models.kernels.reference import lif_reference

log = logging.getLogger(__name__)

AUTO_BACKEND = "auto"
# The one list of LIF backends: validation and error messages read it (`backend_names`).
BACKENDS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": lif_reference,
    "fused": lif_fused,
    "fused_cpu": lif_fused,
    "spikingjelly": lif_spikingjelly,
}
# name -> why 'auto' must not pick it (it stays selectable by name); see register_triton.
AUTO_EXCLUDED: dict[str, str] = {}
_HOW = {"reference": "per-step autograd", "fused_cuda": "Triton kernels", "spikingjelly": "spikingjelly's kernels"}


def register_triton(backends: dict, auto_excluded: dict) -> None:
    """Register the Triton kernels as "fused_cuda"; leave them out of 'auto' unless their source is
    the one whose interpreter tests passed (suite.models.kernels.triton_verification)."""
    from suite.models.kernels import lif_triton, triton_verification

    backends["fused_cuda"] = lif_triton.lif_triton
    if triton_verification.verified():
        auto_excluded.pop("fused_cuda", None)
        return
    reason = (
        f"{triton_verification.KERNEL_SOURCE.name} differs from the source its interpreter tests verified "
        "(run pytest tests/test_triton_interpreter.py)"
    )
    auto_excluded["fused_cuda"] = reason
    log.warning("'auto' does not pick the Triton LIF kernel: %s; it uses the 'fused' backend on CUDA", reason)


if torch.cuda.is_available():
    try:
        register_triton(BACKENDS, AUTO_EXCLUDED)
    except ImportError as err:  # no triton: CUDA tensors use the torch.compile kernels of "fused"
        log.info("Triton LIF kernels unavailable (%s); CUDA uses the compiled 'fused' backend", err)


def backend_names() -> list[str]:
    """Every name `LIF(backend=...)` accepts on this machine: 'auto', then the registered backends."""
    return [AUTO_BACKEND, *sorted(BACKENDS)]


def check_backend(name: str) -> str:
    """`name` if it is a registered backend or 'auto'; else UnknownNameError listing the valid names."""
    from suite.errors import UnknownNameError

    if name != AUTO_BACKEND and name not in BACKENDS:
        raise UnknownNameError(f"unknown LIF backend {name!r}; valid backends: {', '.join(backend_names())}")
    return name


class BackendChoice:
    """What a backend name stands for, resolved once: the registered backend (and its function)
    for each device type, and the one for every other device type."""

    def __init__(self, name: str):
        self.requested = check_backend(name)
        per_device: dict[str, str] = {}
        default = name
        if name == AUTO_BACKEND:
            usable = [n for n in BACKENDS if n not in AUTO_EXCLUDED]
            default = "fused" if "fused" in usable else "reference"
            per_device = {n.removeprefix("fused_"): n for n in usable if n.startswith("fused_")}
        self._default = (default, BACKENDS[default])
        self._per_device = {device_type: (n, BACKENDS[n]) for device_type, n in per_device.items()}

    def _on(self, device: torch.device) -> tuple[str, Callable[..., torch.Tensor]]:
        return self._per_device.get(device.type, self._default)

    def name_on(self, device: torch.device) -> str:
        """The registered backend this choice runs on `device`."""
        return self._on(device)[0]

    def kernel_on(self, device: torch.device) -> Callable[..., torch.Tensor]:
        """fn(x, tau, v_threshold, alpha) -> spikes for tensors on `device`."""
        return self._on(device)[1]

    def __repr__(self) -> str:
        picks = [f"{device_type}: {n}" for device_type, (n, _) in sorted(self._per_device.items())]
        return f"{self.requested!r}" if not picks else f"{self.requested!r} ({', '.join(picks)}, else {self._default[0]})"


def describe(name: str, device: torch.device) -> str:
    """How registered backend `name` runs on `device`, e.g. "native C++ kernels /path/native_cpu-<key>.so"."""
    if BACKENDS[name] is not lif_fused:
        return _HOW.get(name, BACKENDS[name].__module__)
    if device.type != "cpu":
        return "torch kernels"
    if not KERNELS.native_enabled:
        return "torch kernels; native kernels off"
    return native_cpu.status() if native_cpu.available() else f"torch kernels; {native_cpu.status()}"
