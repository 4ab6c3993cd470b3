"""The model-family contract: what a family of spiking models declares to plug into the suite.

A family is one `ModelFamily` object registered under the entry-point group `ENTRY_POINT_GROUP`
(`[project.entry-points."spikformer_suite.models"]` in a package's pyproject.toml), its
entry-point name being the family name. The suite's own families register the same way.

Every model name starts with its family's name (`spikformer-4-384`, `sew-resnet-18`), so a name
finds its family without loading the others. A family declares:

* its names: `names`, listed by `suite models`, and optionally `pattern`, a regex of further
  names it accepts (matched in full), with `pattern_help` saying how it reads;
* its input contract: `inputs`, the sample kinds it takes ("static": [B, C, H, W], repeated over
  T; "sequence": [B, T, C, H, W], e.g. event frames), and T itself as the `time_steps` option;
* its factory: `resolve(name, **options)` checks a name and options and returns the model's
  config, an object with `time_steps` and `to_dict()`; `build(config)` makes the model.

Options: every family takes `TASK_OPTIONS` (what a task says about its inputs); `options` names
the others it takes. A task's `model_overrides` (written for Spikformer, e.g. attn_scale) reach a
family only when it takes them.

The model `build` returns maps [B, C, H, W] or [B, T, C, H, W] to logits [B, classes], holds
`config`, starts every forward from a fresh neuron state (samples are independent), and, when its
spiking neurons are not the suite's `LIF`, names their module types in a `neuron_types` attribute
so that the SOP/energy monitor (`suite.metrics.SNNMonitor`) counts them; the monitor counts every
Linear and Conv layer whatever the family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

ENTRY_POINT_GROUP = "spikformer_suite.models"
INPUT_KINDS = ("static", "sequence")
TASK_OPTIONS = ("num_classes", "in_channels", "img_size", "time_steps")


@dataclass(frozen=True)
class ModelFamily:
    name: str  # the entry-point name; every model name is this or starts with it plus "-"
    summary: str  # one line for `suite models`
    names: tuple[str, ...]  # the names `suite models` lists, smallest first
    resolve: Callable[..., Any]  # (name, **options) -> config (time_steps, to_dict())
    build: Callable[[Any], nn.Module]  # config -> model
    pattern: str = ""  # further accepted names, a regex matched in full
    pattern_help: str = ""  # e.g. "any 'spikformer-L-D' with L blocks and D dims (D divisible by 8)"
    options: tuple[str, ...] = ()  # the options taken beyond TASK_OPTIONS
    inputs: tuple[str, ...] = INPUT_KINDS
    source: str = ""  # where the architecture comes from

    def names_model(self, model: str) -> bool:
        """Whether `model` is one of this family's names (listed, or matching the pattern)."""
        return model in self.names or bool(self.pattern and re.fullmatch(self.pattern, model))

    def takes(self, option: str) -> bool:
        return option in TASK_OPTIONS or option in self.options

    def problems(self) -> list[str]:
        """What breaks the contract (empty when the family is sound)."""
        found = []
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", self.name):
            found.append(f"name {self.name!r} is not lower-case words joined by '-'")
        if not self.names and not self.pattern:
            found.append("declares neither names nor a pattern")
        strays = [n for n in self.names if not owns(self.name, n)]
        if strays:
            found.append(f"names {strays} do not start with the family name {self.name + '-'!r}")
        if not callable(self.resolve) or not callable(self.build):
            found.append("resolve and build must be callables")
        if not self.inputs or set(self.inputs) - set(INPUT_KINDS):
            found.append(f"inputs {self.inputs!r} must be some of {INPUT_KINDS}")
        try:
            re.compile(self.pattern)
        except re.error as err:
            found.append(f"pattern {self.pattern!r} is not a regex: {err}")
        return found


def owns(family: str, model: str) -> bool:
    """Whether `model` belongs to the family named `family` by the naming rule."""
    return model == family or model.startswith(family + "-")
