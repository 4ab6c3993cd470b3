"""The shared Spikformer backbone, and model families (Spikformer's and plugged-in ones) by name."""

from suite.models.fast_paths import set_lif_backend, unfused
from suite.models.neuron import LIF
from suite.models.official import load_official_state_dict
from suite.models.families import create_model, get_family, list_families, model_config, options_for_task
from suite.models.family import ModelFamily
from suite.models.registry import PAPER_VARIANTS, count_parameters, list_models
from suite.models.spikformer import Spikformer, SpikformerConfig

__all__ = [
    "LIF",
    "ModelFamily",
    "PAPER_VARIANTS",
    "Spikformer",
    "SpikformerConfig",
    "count_parameters",
    "create_model",
    "get_family",
    "list_families",
    "list_models",
    "load_official_state_dict",
    "model_config",
    "options_for_task",
    "set_lif_backend",
    "unfused",
]
