"""Load state_dicts saved by the official Spikformer code (ZK-Zhou/spikformer) into suite models.

The official cifar10, imagenet and cifar10dvs model.py files name their layers differently and use
nn.Linear (cifar10), Conv1d (cifar10dvs) or Conv1d/Conv2d 1x1 (imagenet) for the same token-wise
linear maps. Their unused parameters (per-block LayerNorms norm1/norm2, the dvs model's pos_embed
and final norm) are ignored; everything else must match the target model exactly.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from suite.errors import SuiteError

# The official SPS names its stages proj_conv, proj_conv1, proj_conv2, proj_conv3 (and _bn alike).
_STAGE = {"": 0, "1": 1, "2": 2, "3": 3}
_RULES = [
    (re.compile(r"^patch_embed\.proj_(conv|bn)(\d?)\.(.+)$"),
     lambda m: f"stem.stages.{_STAGE[m[2]]}.{m[1]}.{m[3]}"),
    (re.compile(r"^patch_embed\.rpe_(conv|bn)\.(.+)$"), lambda m: f"stem.rpe.{m[1]}.{m[2]}"),
    (re.compile(r"^block\.(\d+)\.attn\.(q|k|v|proj)_(?:linear|conv)\.(.+)$"),
     lambda m: f"blocks.{m[1]}.attn.{m[2]}.linear.{m[3]}"),
    (re.compile(r"^block\.(\d+)\.attn\.(q|k|v|proj)_bn\.(.+)$"), lambda m: f"blocks.{m[1]}.attn.{m[2]}.bn.{m[3]}"),
    (re.compile(r"^block\.(\d+)\.mlp\.(fc1|fc2)_(?:linear|conv)\.(.+)$"),
     lambda m: f"blocks.{m[1]}.mlp.{m[2]}.linear.{m[3]}"),
    (re.compile(r"^block\.(\d+)\.mlp\.(fc1|fc2)_bn\.(.+)$"), lambda m: f"blocks.{m[1]}.mlp.{m[2]}.bn.{m[3]}"),
    (re.compile(r"^head\.(weight|bias)$"), lambda m: f"head.{m[1]}"),
]
_UNUSED = re.compile(r"^(block\.\d+\.norm[12]\.|norm\.|pos_embed$)")


def official_key_to_suite(key: str) -> str | None:
    """The suite key for an official key; None for the official code's unused parameters."""
    if _UNUSED.match(key):
        return None
    for pattern, rename in _RULES:
        m = pattern.match(key)
        if m:
            return rename(m)
    raise SuiteError(f"official state_dict key {key!r} is not part of any official Spikformer model")


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")  # saved from DistributedDataParallel
        new_key = official_key_to_suite(key)
        if new_key is None:
            continue
        if new_key.endswith("linear.weight") and value.dim() > 2:
            value = value.reshape(value.shape[0], value.shape[1])  # 1x1 conv kernel -> Linear
        converted[new_key] = value
    return converted


def state_dict_mismatches(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """"" when `state_dict` (suite key names) fits `model` exactly; else the missing and unexpected
    keys and the shape mismatches, each list cut to five."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    if not (missing or unexpected or wrong_shape):
        return ""
    return (
        f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}; "
        f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
        f"shape mismatches {wrong_shape[:5]}{'...' if len(wrong_shape) > 5 else ''}"
    )


def load_official_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load an official cifar10/imagenet/cifar10dvs state_dict into `model`."""
    converted = convert_official_state_dict(state_dict)
    problems = state_dict_mismatches(model, converted)
    if problems:
        cfg = getattr(model, "config", None)
        raise SuiteError(
            f"official state_dict does not fit model {cfg}: {problems}; "
            "pick the variant (depth, dim, stem, classes) it was trained as"
        )
    model.load_state_dict(converted, strict=True)
