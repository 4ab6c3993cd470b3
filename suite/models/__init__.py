"""The shared Spikformer backbone and its registry."""

from suite.models.neuron import LIF
from suite.models import lif_fused  # noqa: F401  (registers the fused LIF backends in BACKENDS)
from suite.models import lif_spikingjelly  # noqa: F401  (registers the "spikingjelly" backend)
from suite.models.official import load_official_state_dict
from suite.models.registry import (
    PAPER_VARIANTS,
    count_parameters,
    create_model,
    list_models,
    model_config,
)
from suite.models.spikformer import Spikformer, SpikformerConfig

__all__ = [
    "LIF",
    "PAPER_VARIANTS",
    "Spikformer",
    "SpikformerConfig",
    "count_parameters",
    "create_model",
    "list_models",
    "load_official_state_dict",
    "model_config",
]
