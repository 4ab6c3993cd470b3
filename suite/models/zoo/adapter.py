"""Fitting a spikingjelly zoo network to the suite's model contract (see `suite.models.family`).

`ZooModel` runs the network in multi-step mode on a time-major [T, B, ...] input (a static image
repeated over T, or a sequence), resets every neuron's membrane before and after each forward
(samples are independent; no state leaks between batches), and averages the logits over T.
`zoo_family` turns a table of upstream builders into a `ModelFamily`. spikingjelly is imported
when a model is built (it takes seconds), not when the family is discovered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from suite.errors import UnknownNameError, UsageError
from suite.models.family import ModelFamily

# What a zoo model is built for when a task does not say: ImageNet's input, spikingjelly's defaults.
DEFAULT_INPUT = dict(num_classes=1000, in_channels=3, img_size=(224, 224))


@dataclass(frozen=True)
class ZooConfig:
    name: str  # the suite's model name, e.g. "sew-resnet-18"
    num_classes: int
    in_channels: int
    img_size: tuple[int, int]  # the input the model is sized for (shown by `suite models`)
    time_steps: int
    options: tuple[tuple[str, Any], ...] = ()  # the family's own options, e.g. (("cnf", "ADD"),)

    def option(self, name: str) -> Any:
        return dict(self.options)[name]

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        return {**{k: v for k, v in fields.items() if k != "options"}, **dict(self.options)}


class ZooModel(nn.Module):
    """A zoo network in multi-step mode behind the suite's [B, C, H, W] | [B, T, C, H, W] -> [B, classes]."""

    def __init__(self, config: ZooConfig, net: nn.Module):
        super().__init__()
        from spikingjelly.activation_based import functional, neuron

        self.config = config
        self.net = net
        functional.set_step_mode(self.net, "m")
        self.neuron_types = (neuron.BaseNode,)  # what the SOP/energy monitor counts as spiking neurons

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        if x.dim() == 4:  # [B, C, H, W] static: the same image at every time step
            x = x.unsqueeze(0).expand(self.config.time_steps, *x.shape)
        elif x.dim() == 5:  # [B, T, C, H, W] sequence
            x = x.transpose(0, 1)
        else:
            raise ValueError(f"{self.config.name}: expected input [B, C, H, W] or [B, T, C, H, W], got {tuple(x.shape)}")
        functional.reset_net(self.net)  # also after a forward that raised
        try:
            out = self.net(x.contiguous())
        finally:
            functional.reset_net(self.net)  # frees the membranes; nothing carries into the next batch
        return out.mean(0) if out.dim() == 3 else out  # [T, B, classes] -> [B, classes]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"model option {name} must be a positive integer, got {value!r}")
    return value


def _img_size(value: Any) -> tuple[int, int]:
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2:
        raise UsageError(f"model option img_size must be two positive integers (H, W), got {value!r}")
    return tuple(_positive_int("img_size", v) for v in size)


def zoo_family(
    name: str,
    summary: str,
    builders: dict[str, str],
    make: Callable[[Callable[..., nn.Module], ZooConfig], nn.Module],
    *,
    time_steps: int,
    choices: dict[str, tuple] | None = None,
    source: str,
) -> ModelFamily:
    """A family whose model `name-x` is `make(builder, config)`, `builder` being the upstream function
    `builders["name-x"]` ("module:function" under spikingjelly.activation_based.model). `choices`:
    the family's own options and their valid values, the first being the default."""
    choices = choices or {}

    def resolve(model: str, **given) -> ZooConfig:
        if model not in builders:
            raise UnknownNameError(f"unknown model {model!r}; valid {name} models: {', '.join(builders)}")
        for option, valid in choices.items():
            if given.get(option, valid[0]) not in valid:
                raise UsageError(f"model option {option} must be one of {', '.join(map(str, valid))}, got {given[option]!r}")
        return ZooConfig(
            name=model,
            num_classes=_positive_int("num_classes", given.get("num_classes", DEFAULT_INPUT["num_classes"])),
            in_channels=_positive_int("in_channels", given.get("in_channels", DEFAULT_INPUT["in_channels"])),
            img_size=_img_size(given.get("img_size", DEFAULT_INPUT["img_size"])),
            time_steps=_positive_int("time_steps", given.get("time_steps", time_steps)),
            options=tuple((option, given.get(option, valid[0])) for option, valid in choices.items()),
        )

    def build(config: ZooConfig) -> ZooModel:
        import importlib

        module, function = builders[config.name].split(":")
        builder = getattr(importlib.import_module(f"spikingjelly.activation_based.model.{module}"), function)
        return ZooModel(config, make(builder, config))

    return ModelFamily(
        name=name, summary=summary, names=tuple(builders), resolve=resolve, build=build,
        options=tuple(choices), source=source,
    )  # fmt: skip
