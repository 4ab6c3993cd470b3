"""Model families through the `spikformer_suite.models` entry-point group, and the public API
over them: `create_model(name, num_classes=..., **overrides)`, `model_config`, `options_for_task`.

The suite's own families (Spikformer, the spikingjelly zoo) register in pyproject.toml exactly like
a third-party package would (see `suite.models.family` for the contract). A name finds its family
by its prefix, so only that family is loaded; a family that fails to import or breaks the contract
raises `PluginError` naming the plugin, never skipped. `suite models` loads them all.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from suite.errors import PluginError, UnknownNameError, UsageError
from suite.models.family import ENTRY_POINT_GROUP, ModelFamily, owns
from suite.plugins import load_plugin, registered


@functools.cache
def _entry_points() -> dict[str, Any]:
    found = registered(ENTRY_POINT_GROUP, "model family")
    if not found:  # the suite registers its own families: their absence is stale install metadata
        raise PluginError(
            f"no model family is registered under the entry-point group {ENTRY_POINT_GROUP!r}: the installed "
            "metadata of spikformer-suite predates model families; reinstall it (pip install -e .)"
        )
    return found


@functools.cache
def load_family(family: str) -> ModelFamily:
    """The family registered as `family`; PluginError when it fails to load or breaks the contract."""
    eps = _entry_points()
    if family not in eps:
        raise UnknownNameError(f"unknown model family {family!r}; valid families: {', '.join(sorted(eps)) or '(none)'}")
    ep = eps[family]
    where = f"model family plugin {ep.name!r} ({ep.value})"
    obj = load_plugin(ep, "model family")
    if not isinstance(obj, ModelFamily):
        raise PluginError(f"{where} is not a suite.models.family.ModelFamily (got {type(obj).__name__})")
    if obj.name != ep.name:
        raise PluginError(f"{where} declares name {obj.name!r}; the entry-point name and family name must match")
    problems = obj.problems()
    if problems:
        raise PluginError(f"{where} breaks the model-family contract: {'; '.join(problems)}")
    return obj


def family_names() -> list[str]:
    """Names of all registered families (without loading them)."""
    return sorted(_entry_points())


def list_families() -> list[ModelFamily]:
    """Every registered family, loaded; the first broken plugin raises PluginError."""
    return [load_family(name) for name in family_names()]


def get_family(model: str) -> ModelFamily:
    """The family that `model` names: the registered family whose name is the longest prefix of it."""
    owners = [family for family in _entry_points() if isinstance(model, str) and owns(family, model)]
    if not owners:
        raise _unknown_model(model, "no model family's name starts it", family_names())
    family = load_family(max(owners, key=len))
    if not family.names_model(model):
        raise _unknown_model(model, f"not a name of family {family.name!r}", [family.name])
    return family


def _unknown_model(model: Any, why: str, families: list[str]) -> UnknownNameError:
    described = []
    for name in families:
        try:
            family = load_family(name)
        except PluginError:
            described.append(f"{name} (fails to load; `suite models` says why)")
            continue
        shown = ", ".join(family.names) + (f", or {family.pattern_help}" if family.pattern_help else "")
        described.append(f"{name}: {shown}")
    return UnknownNameError(f"unknown model {model!r} ({why}); valid names: " + "; ".join(described))


def model_config(name: str, num_classes: int | None = None, **overrides) -> Any:
    """The checked config of model `name` (e.g. a SpikformerConfig), without building it."""
    family = get_family(name)
    unknown = sorted(option for option in overrides if not family.takes(option))
    if unknown:
        from suite.models.family import TASK_OPTIONS

        valid = ", ".join(TASK_OPTIONS + family.options)
        raise UnknownNameError(f"unknown model option(s) {unknown} for family {family.name!r}; valid options: {valid}")
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    return family.resolve(name, **overrides)


def create_model(name: str, num_classes: int | None = None, **overrides) -> nn.Module:
    """Build model `name` (e.g. "spikformer-4-384", "sew-resnet-18"), overriding any of its options."""
    return get_family(name).build(model_config(name, num_classes, **overrides))


def options_for_task(model: str, task, time_steps: int | None = None) -> dict[str, Any]:
    """`create_model`'s options for `model` on `task`: the task's classes, input shape and T, and
    those of the task's model overrides the family takes (they are written for Spikformer:
    attn_scale means nothing to a ResNet). Refuses a task whose input kind the family does not take."""
    family = get_family(model)
    kind = "sequence" if task.config.sequence_input else "static"
    if kind not in family.inputs:
        raise UsageError(
            f"model {model!r} (family {family.name!r}) takes {' or '.join(family.inputs)} input; task "
            f"{task.name!r} gives {kind} samples: choose a model of another family"
        )
    return {key: value for key, value in task.model_kwargs(time_steps).items() if family.takes(key)}


def clear_cache() -> None:
    """Forget discovered families (after installing a new one in the same process)."""
    _entry_points.cache_clear()
    load_family.cache_clear()
