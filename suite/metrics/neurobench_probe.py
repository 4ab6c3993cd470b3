"""NeuroBench's metrics on a suite model, computed by the `neurobench` package itself (2.x).

NeuroBench finds a model's parts by type: connection layers are nn.Linear / ConvNd / RNN
modules, activation layers are the types in the model wrapper's activation list (ReLU, Sigmoid;
spiking neurons are recognised as snntorch's SpikingNeuron). The suite's LIF is a module of its
own, so the probe registers it as an activation module; nothing else needs adapting, because the
probe turns the model's fused block paths off while it lives (`suite.models.fast_paths.unfused`),
so the suite's Spikformer calls its Linear, Conv and LIF modules and NeuroBench's hooks see them.

How NeuroBench 2.3 counts (neurobench/metrics/workload/synaptic_operations.py and
metrics/utils/layers/): each connection layer's input of one forward pass is "spiking" when all
of it is in {-1, 0, 1}. The layer is replayed on a copy with every non-zero weight set to 1, the
bias zeroed and the input binarised (non-zero -> 1); the sum of that output is the layer's
effective operations: ACs for a spiking input, MACs otherwise. `Dense` replays it with all
weights and inputs set to 1. Activation sparsity is the share of zero outputs over all activation
layers. So, against the suite's SOPs (`suite.metrics.flops`), on a model with no weight exactly 0:

    NeuroBench Effective_ACs = the suite's SOPs of the Linear/Conv calls whose input is 0/1 spikes.

The suite's SOPs also hold (a) the attention products Q K^T V (NeuroBench counts modules, and a
matmul is none), and (b) the layers fed by the residual stream (q, k, v and fc1: sums of spike
trains, values 0, 1, 2, ...), which the suite counts as |x| accumulates per synapse and NeuroBench
counts as effective MACs with each non-zero input once. Real-valued inputs (the image at the first
conv, the classifier's mean) are MACs in both; NeuroBench counts the image at every time step, the
suite once (identical steps are computed once). tests/test_neurobench.py asserts this relation.

The probe feeds NeuroBench's own metric objects from the engine's evaluation loop
(`evaluate(on_batch=probe)`), and keeps its totals as sums that workers all-reduce.
"""

from __future__ import annotations

import contextlib

import torch

from suite import schema
from suite.errors import UsageError

INSTALL_HINT = "pip install -e '.[neurobench]' (or: pip install neurobench)"
# The sums a worker contributes, in counts_tensor() order.
_SUMS = ("correct", "sparsity_x_samples", "samples", "effective_acs", "effective_macs", "dense", "synops_samples")


def require_neurobench() -> None:
    """A clear error, before anything starts, when the optional `neurobench` package is missing."""
    try:
        import neurobench.metrics  # noqa: F401
        import neurobench.models  # noqa: F401
    except ImportError as err:
        raise UsageError(f"--neurobench needs the neurobench package ({err}); install it: {INSTALL_HINT}") from err


class NeuroBenchProbe:
    """NeuroBench's hooks on `model` while it lives; call it once per evaluated batch.

        probe = NeuroBenchProbe(model)
        evaluate(model, dataset, ..., on_batch=probe)
        metrics = probe.metrics(all_reduce_sum(probe.counts_tensor(), device))
        probe.close()
    """

    def __init__(self, model: torch.nn.Module):
        require_neurobench()
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations
        from neurobench.models import TorchModel

        from suite.models.fast_paths import unfused
        from suite.models.neuron import LIF

        self._unfused = contextlib.ExitStack()
        self._unfused.enter_context(unfused(model))  # until close(): NeuroBench's hooks see every module
        self.model = TorchModel(model)
        self.model.add_activation_module(LIF)
        self.model.register_hooks()
        self.static = {
            schema.M_NB_FOOTPRINT: float(Footprint()(self.model)),
            schema.M_NB_CONNECTION_SPARSITY: float(ConnectionSparsity()(self.model)),
        }
        self.accuracy, self.sparsity = ClassificationAccuracy(), ActivationSparsity()
        self.synops = SynapticOperations()
        self.synops.reset()
        self._correct = self._sparsity_x_samples = 0.0
        self._samples = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        """One batch, as NeuroBench's Benchmark.run does it: metrics on (preds, (x, y)), then reset."""
        preds, data, size = logits.argmax(dim=1), (x, y), y.shape[0]
        # Per-batch metrics are batch means; NeuroBench weights them by batch size, and so do we.
        self._correct += self.accuracy(self.model, preds, data) * size
        self._sparsity_x_samples += self.sparsity(self.model, preds, data) * size
        self.synops(self.model, preds, data)  # accumulates its own totals
        self.model.reset_hooks()
        self._samples += size

    def counts_tensor(self) -> torch.Tensor:
        """This worker's sums (float64), for an all-reduce SUM."""
        s = self.synops
        values = [self._correct, self._sparsity_x_samples, self._samples, s.AC, s.MAC, s.total_synops, s.total_samples]
        return torch.tensor([float(v) for v in values], dtype=torch.float64)

    def metrics(self, counts: torch.Tensor | None = None) -> dict[str, float]:
        """The `neurobench.*` metrics over everything counted (all workers' sums when given)."""
        sums = dict(zip(_SUMS, (counts if counts is not None else self.counts_tensor()).tolist()))
        samples, synops_samples = max(sums["samples"], 1.0), max(sums["synops_samples"], 1.0)
        return {
            **self.static,
            schema.M_NB_ACCURACY: sums["correct"] / samples,
            schema.M_NB_ACTIVATION_SPARSITY: sums["sparsity_x_samples"] / samples,
            schema.M_NB_EFFECTIVE_ACS: sums["effective_acs"] / synops_samples,
            schema.M_NB_EFFECTIVE_MACS: sums["effective_macs"] / synops_samples,
            schema.M_NB_DENSE: sums["dense"] / synops_samples,
        }

    def close(self) -> None:
        """Remove NeuroBench's hooks and turn the fused paths back on: the model is left as it was."""
        self.model.cleanup_hooks()
        self._unfused.close()
