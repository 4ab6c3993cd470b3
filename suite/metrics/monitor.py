"""SNNMonitor: firing rates, synaptic operations (SOPs), MACs and energy of a spiking model.

Forward hooks count, per module of `model.named_modules()`:
  * LIF neurons: spikes and neuron-steps -> firing rate = spikes / (neurons x T);
  * nn.Linear / nn.Conv1d/2d/3d: SOPs on spike inputs, MACs on real-valued inputs;
  * attention-product modules: every matmul inside them (see `suite.metrics.flops` for the rules).

Sums that depend on the data (spikes, SOPs, MACs) accumulate in a float64 vector on the model's
device and shape-only sums (samples, neuron-steps, dense MACs) in a host vector of the same layout,
so counting never synchronises with the device. `counts_tensor()` adds them into one vector that
workers can all-reduce (SUM); after `load_counts()` `summary()` covers the whole evaluation set.
Counting happens only inside `with monitor.recording():`, which also turns the model's fused
block paths off (`suite.models.fast_paths.unfused`), so that every counted module is called.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from suite.metrics.energy import energy_mj
from suite.metrics.flops import FLOAT64, conv_counts, linear_counts, matmul_counts, time_repeat_factor, total

logger = logging.getLogger(__name__)

LIF_FIELDS = ("spikes", "neuron_steps", "sample_steps")
SYNAPSE_FIELDS = ("sops", "dense_macs", "real_macs")
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

_MATMULS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm}
_MATMULS |= {torch.mm, torch.Tensor.mm}
_UNCOUNTED_PRODUCTS = {torch.einsum, torch.baddbmm, torch.addmm, torch.addbmm}


@dataclass(frozen=True)
class _Layer:
    name: str
    kind: str  # "lif" | "linear" | "conv" | "attention"
    offset: int  # first slot of this layer's sums in the counts vector


def _default_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    from suite.models.neuron import LIF
    from suite.models.spikformer import AttentionProduct

    return (LIF,), (AttentionProduct,)


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


class _ProductMatmuls(TorchFunctionMode):
    """Active only during one attention-product forward: hands each matmul to the monitor."""

    def __init__(self, monitor: SNNMonitor, layer: _Layer):
        super().__init__()
        self.monitor, self.layer = monitor, layer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _MATMULS or func is torch.Tensor.__rmatmul__:
            a, b = args[0].detach(), args[1].detach()
            if func is torch.Tensor.__rmatmul__:  # b.__rmatmul__(a) computes a @ b
                a, b = b, a
            sops, dense, real = matmul_counts(a, b)
            self.monitor._add(self.layer, (sops, None, real), (0, dense, 0))
        elif func in _UNCOUNTED_PRODUCTS:
            self.monitor._warn_once(f"{self.layer.name}: {func.__name__} is not counted; use matmul/@ in products")
        return out


class SNNMonitor:
    """Counts spikes and operations of `model` while recording; see the module docstring.

        monitor = SNNMonitor(model)
        with torch.no_grad(), monitor.recording():
            for x, _ in loader:
                model(x)
        dist.all_reduce(counts := monitor.counts_tensor())  # optional, across workers
        monitor.load_counts(counts)
        stats, table = monitor.summary(), monitor.firing_rate_table()
        monitor.remove()

    neuron_types default to the model's `neuron_types` attribute, else the suite's LIF; product_types
    to Spikformer's AttentionProduct.
    Eager models only: the hooks and the matmul interception do not see inside torch.compile.
    """

    def __init__(
        self,
        model: nn.Module,
        neuron_types: tuple[type, ...] | None = None,
        product_types: tuple[type, ...] | None = None,
    ):
        default_neurons, default_products = _default_types()
        # A model family whose neurons are not the suite's LIF names their types (suite.models.family).
        neuron_types = neuron_types or getattr(model, "neuron_types", None) or default_neurons
        product_types = product_types or default_products
        self.model = model
        self.layers: list[_Layer] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._recording = False
        self._removed = False
        self._warned: set[str] = set()
        self._time_steps: int | None = None  # of the forward pass in progress
        self._batch: int | None = None
        self._encoding_layer_next = False  # the next Linear/Conv call is the first of a forward pass
        self._open_modes: list[_ProductMatmuls] = []

        size = 1  # slot 0: samples
        for name, module in model.named_modules():
            kind = self._kind(module, neuron_types, product_types)
            if kind is None:
                continue
            layer = _Layer(name or type(module).__name__, kind, size)
            size += len(LIF_FIELDS if kind == "lif" else SYNAPSE_FIELDS)
            self.layers.append(layer)
            self._hook(module, layer)
        self._counts = torch.zeros(size, dtype=FLOAT64)  # data-dependent sums, on the model's device
        self._host_counts = [0.0] * size  # shape-only sums
        self._counts_dirty = False  # whether _counts holds anything but zeros
        self._handles.append(model.register_forward_pre_hook(self._on_model_input, with_kwargs=True))
        self.params = sum(p.numel() for p in model.parameters())
        if not any(layer.kind == "lif" for layer in self.layers):
            logger.warning("SNNMonitor: %s has no neuron modules of types %s", type(model).__name__, neuron_types)

    @staticmethod
    def _kind(module: nn.Module, neuron_types, product_types) -> str | None:
        if isinstance(module, neuron_types):
            return "lif"
        if isinstance(module, product_types):
            return "attention"
        if isinstance(module, nn.Linear):
            return "linear"
        if isinstance(module, CONV_TYPES):
            return "conv"
        return None

    # ---------------------------------------------------------------- hooks

    def _hook(self, module: nn.Module, layer: _Layer) -> None:
        if layer.kind == "lif":
            self._handles.append(module.register_forward_hook(lambda m, args, out: self._on_spikes(layer, out)))
        elif layer.kind == "attention":
            self._handles.append(module.register_forward_pre_hook(lambda m, args: self._enter_product(layer)))
            # always_call: a forward that raises must not leave the mode on the stack.
            self._handles.append(module.register_forward_hook(lambda m, a, o: self._exit_product(), always_call=True))
        else:
            hook = lambda m, args, out: self._on_synapses(layer, m, args, out)  # noqa: E731
            self._handles.append(module.register_forward_hook(hook))

    def _on_model_input(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self._recording:
            return
        x = _first_tensor(args, kwargs)
        if x is None or x.dim() == 0:
            return
        self._batch = x.shape[0]
        # The suite's model contract: [B, C, H, W] is repeated over config.time_steps, [B, T, ...] is a sequence.
        config = getattr(model, "config", None) or getattr(getattr(model, "module", None), "config", None)  # DDP
        config_steps = getattr(config, "time_steps", None)
        self._time_steps = config_steps if x.dim() == 4 else (x.shape[1] if x.dim() == 5 else None)
        self._host_counts[0] += x.shape[0]
        self._encoding_layer_next = True

    def _on_spikes(self, layer: _Layer, out: torch.Tensor) -> None:
        if not self._recording:
            return
        with torch.no_grad():
            spikes = total(out.detach())
            self._add(layer, (spikes, None, None), (0, out.numel(), out.shape[0] * out.shape[1]))

    def _on_synapses(self, layer: _Layer, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if not self._recording:
            return
        with torch.no_grad():
            x = args[0].detach()
            # Only the encoding layer can see the input image repeated over time; checking later
            # layers would cost a full pass over every activation for nothing.
            repeat = time_repeat_factor(x, self._time_steps if self._encoding_layer_next else None, self._batch)
            self._encoding_layer_next = False
            if layer.kind == "linear":
                sops, dense, real = linear_counts(module, x, repeat)
            else:
                sops, dense, real = conv_counts(module, x, out, repeat)
            self._add(layer, (sops, None, real), (0, dense, 0))

    def _enter_product(self, layer: _Layer) -> None:
        if self._recording:
            mode = _ProductMatmuls(self, layer)
            mode.__enter__()
            self._open_modes.append(mode)

    def _exit_product(self) -> None:
        if self._open_modes:
            self._open_modes.pop().__exit__(None, None, None)

    def _add(self, layer: _Layer, on_device: tuple, on_host: tuple) -> None:
        """Add one call's sums to the layer's slots: tensors (or None) to the device vector, numbers
        to the host vector."""
        for i, value in enumerate(on_host):
            self._host_counts[layer.offset + i] += value
        with torch.no_grad():
            for i, value in enumerate(on_device):
                if value is not None:
                    self._ensure_device(value.device)
                    self._counts[layer.offset + i] += value
                    self._counts_dirty = True

    def _ensure_device(self, device: torch.device) -> None:
        if self._counts.device == device:
            return
        if self._counts_dirty:  # the model moved between recordings: carry the sums over (one copy)
            self._counts = self._counts.to(device)
        else:  # fresh zeros on the device: no host-to-device copy, which would synchronise
            self._counts = torch.zeros(self._counts.shape, dtype=FLOAT64, device=device)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(message)

    # ---------------------------------------------------------------- public API

    @contextlib.contextmanager
    def recording(self) -> Iterator[SNNMonitor]:
        """Count the forward passes run inside this block (sums add up across blocks); the model's
        blocks call each of their modules meanwhile (fast_paths.unfused), so the hooks see them."""
        from suite.models.fast_paths import unfused

        if self._removed:
            raise RuntimeError("SNNMonitor.recording(): the hooks were removed; create a new SNNMonitor")
        if self._recording:
            raise RuntimeError("SNNMonitor.recording() is already active; blocks cannot be nested")
        self._recording = True
        try:
            with unfused(self.model):
                yield self
        finally:
            self._recording = False
            while self._open_modes:  # only after an exception escaped a product forward
                self._exit_product()

    def reset(self) -> None:
        self._counts.zero_()
        self._host_counts = [0.0] * len(self._host_counts)
        self._counts_dirty = False

    def remove(self) -> None:
        """Remove every hook; the model is left exactly as it was."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._removed = True

    def counts_tensor(self) -> torch.Tensor:
        """The raw sums (float64, 1-D, on the model's device), for an all-reduce SUM."""
        if not self._counts_dirty:  # a worker that recorded nothing still all-reduces on its device
            parameter = next(self.model.parameters(), None)
            self._ensure_device(parameter.device if parameter is not None else self._counts.device)
        return self._counts + torch.tensor(self._host_counts, dtype=FLOAT64).to(self._counts.device)

    def load_counts(self, counts: torch.Tensor) -> None:
        """Replace the local sums with `counts` (e.g. all-reduced over workers)."""
        expected = self._counts.numel()
        if not isinstance(counts, torch.Tensor) or counts.dim() != 1 or counts.numel() != expected:
            got = tuple(counts.shape) if isinstance(counts, torch.Tensor) else type(counts).__name__
            raise ValueError(
                f"SNNMonitor.load_counts: expected a 1-D tensor of {expected} sums from counts_tensor() of a "
                f"monitor on the same model, got {got}"
            )
        if not torch.isfinite(counts).all() or (counts < 0).any():
            raise ValueError("SNNMonitor.load_counts: counts must be finite and non-negative (raw sums)")
        self._counts = counts.detach().to(device=self._counts.device, dtype=FLOAT64).clone()
        self._host_counts = [0.0] * expected
        self._counts_dirty = True

    def _rows(self) -> tuple[float, list[dict]]:
        values = self.counts_tensor().cpu().tolist()
        samples = values[0]
        if samples <= 0:
            raise RuntimeError(
                "SNNMonitor: nothing recorded yet; run the model inside `with monitor.recording():` first"
            )
        rows = []
        for layer in self.layers:
            if layer.kind == "lif":
                spikes, neuron_steps, sample_steps = values[layer.offset : layer.offset + 3]
                if neuron_steps == 0:
                    continue  # never called
                rows.append(
                    dict(
                        layer=layer.name,
                        kind="lif",
                        neurons=neuron_steps / sample_steps,
                        time_steps=sample_steps / samples,
                        spikes=spikes,
                        rate=spikes / neuron_steps,
                    )
                )
            else:
                sops, dense, real = values[layer.offset : layer.offset + 3]
                if dense == 0:
                    continue
                rows.append(
                    dict(
                        layer=layer.name,
                        kind=layer.kind,
                        sops_per_sample=sops / samples,
                        dense_macs_per_sample=dense / samples,
                        macs_per_sample=real / samples,
                        # Effective input rate of the paper's SOPs = rate x T x FLOPs (dense MACs span all T).
                        input_rate=sops / dense,
                    )
                )
        return samples, rows

    def summary(self) -> dict:
        """Per-sample figures over everything recorded (or loaded) since the last reset.

        Keys: firing_rates {layer: rate}, mean_firing_rate (unweighted mean over LIF layers),
        sops_per_sample, flops_per_sample (MACs of real-valued-input layers: the encoding layer,
        counted once for a static image, and the classifier on the mean of spike counts),
        energy_mj_per_sample, samples, params.
        """
        samples, rows = self._rows()
        rates = {row["layer"]: row["rate"] for row in rows if row["kind"] == "lif"}
        sops = sum(row["sops_per_sample"] for row in rows if row["kind"] != "lif")
        macs = sum(row["macs_per_sample"] for row in rows if row["kind"] != "lif")
        return {
            "firing_rates": rates,
            "mean_firing_rate": sum(rates.values()) / len(rates) if rates else 0.0,
            "sops_per_sample": sops,
            "flops_per_sample": macs,
            "energy_mj_per_sample": energy_mj(macs, sops),
            "samples": int(samples),
            "params": self.params,
        }

    def firing_rate_table(self) -> pd.DataFrame:
        """One row per layer that ran: LIF rows carry neurons/time_steps/spikes/rate; Linear, Conv
        and attention rows carry per-sample SOPs, dense and real-valued MACs and the input rate."""
        _, rows = self._rows()
        columns = ["layer", "kind", "neurons", "time_steps", "spikes", "rate"]
        columns += ["sops_per_sample", "dense_macs_per_sample", "macs_per_sample", "input_rate"]
        return pd.DataFrame(rows, columns=columns)
