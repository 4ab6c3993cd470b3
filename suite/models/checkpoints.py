"""Reading model checkpoints for evaluation: the suite's own and the official Spikformer releases.

Layouts taken (`read_checkpoint`):
  * the suite's training checkpoint `state.pt` (`format_version`, `model`, `settings`, ...);
  * timm's checkpoint, as the official training scripts save it (`model_best.pth.tar`): a dict
    with `state_dict` (and `state_dict_ema` when EMA was on), `args` (an argparse.Namespace),
    `optimizer`, `epoch`, ...;
  * a bare state_dict.
Keys may carry DistributedDataParallel's `module.` prefix. Key names say whose model it is: the
official code's (`patch_embed.*`, `block.*`) or the suite's (`stem.*`, `blocks.*`).

Loading is safe by default: `torch.load(weights_only=True)`, allowing exactly one extra type,
argparse.Namespace (timm's `args`). Any other pickled object is refused with the types named,
unless the caller trusts the file. A state_dict does not encode the attention head count (nor T),
so when the checkpoint records its architecture (official `args`, the suite's `settings`) it is
checked against the model before any weight is loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from suite.errors import CorruptDataError, SuiteError, UsageError

log = logging.getLogger(__name__)

FORMATS = ("auto", "suite", "official")
SAFE_EXTRA_TYPES = (argparse.Namespace,)
_OFFICIAL_PREFIXES = ("patch_embed.", "block.")
_SUITE_PREFIXES = ("stem.", "blocks.")

# official `args` attribute -> (what it is, how to read it off a SpikformerConfig). The names are
# those of the official train.py flags (-T/--time-step, -L/--layer, --dim, --num_heads, ...).
OFFICIAL_ARCH_ARGS = {
    "layer": ("depth", lambda cfg: cfg.depth),
    "dim": ("dim", lambda cfg: cfg.dim),
    "num_heads": ("heads", lambda cfg: cfg.heads),
    "time_step": ("time steps T", lambda cfg: cfg.time_steps),
    "patch_size": ("patch size", lambda cfg: patch_size(cfg)),
    "mlp_ratio": ("MLP ratio", lambda cfg: cfg.mlp_ratio),
    "num_classes": ("classes", lambda cfg: cfg.num_classes),
    "img_size": ("image size", lambda cfg: cfg.img_size[0]),
}


class CheckpointError(SuiteError):
    """A checkpoint that cannot be read safely or does not fit the model; names file and cause."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    format: str  # "suite" | "official": whose key names the weights carry
    weights_entry: str  # where the weights were: "model", "state_dict", "state_dict_ema" or "bare"
    state_dict: dict[str, torch.Tensor]  # `module.` prefixes removed
    settings: dict[str, Any] | None = None  # a suite checkpoint's RunSettings
    args: dict[str, Any] = field(default_factory=dict)  # an official checkpoint's train.py args

    def inferred_model(self) -> dict[str, Any]:
        """The model name and T the checkpoint records (for flags left unset)."""
        if self.settings:
            return {k: self.settings[k] for k in ("model", "time_steps") if self.settings.get(k) is not None}
        found = {}
        if isinstance(self.args.get("layer"), int) and isinstance(self.args.get("dim"), int):
            found["model"] = f"spikformer-{self.args['layer']}-{self.args['dim']}"
        if isinstance(self.args.get("time_step"), int):
            found["time_steps"] = self.args["time_step"]
        return found


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def patch_size(cfg) -> int:
    """Input pixels per token side: each max-pool of the stem halves the image."""
    from suite.models.spikformer import STEM_POOLS

    return 2 ** sum(STEM_POOLS[cfg.stem])


def _load_object(path: Path, trust: bool) -> Any:
    if trust:
        log.warning("loading %s with full unpickling (--trust-checkpoint): it can run code", path)
        loader = dict(weights_only=False)
    else:
        loader = dict(weights_only=True)
    try:
        with torch.serialization.safe_globals(list(SAFE_EXTRA_TYPES)):
            return torch.load(path, map_location="cpu", **loader)
    except pickle.UnpicklingError as err:
        refused = [] if trust else _unsafe_types(path)
        named = re.search(r"GLOBAL (\S+?)[ .]*(?: was| whose|$)", str(err), re.M)
        if not refused and (named is None or _missing_global(named[1])):
            # Not a refused type, or one that does not exist (a name cut short): the pickle is broken.
            raise _unreadable(path, err) from err
        raise CheckpointError(
            f"checkpoint {path} pickles objects a safe load refuses: {', '.join(refused or [_first_line(err)])}; only "
            "tensors, plain containers and argparse.Namespace are accepted. If you trust the file (it can run code "
            "when loaded), pass --trust-checkpoint"
        ) from err
    except Exception as err:  # zip, struct, EOF and storage errors alike: the file is not whole
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} ({path.stat().st_size} bytes) cannot be read as a torch checkpoint: it is truncated or "
        f"corrupted ({type(err).__name__}: {_first_line(err)}); download or copy it again"
    )


def _missing_global(name: str) -> bool:
    """Whether `module.attr` names nothing in a module already imported (never imports one: the
    name comes from an untrusted file)."""
    module, _, attr = name.rpartition(".")
    return module in sys.modules and not hasattr(sys.modules[module], attr)


def _unsafe_types(path: Path) -> list[str]:
    allowed = {f"{t.__module__}.{t.__qualname__}" for t in SAFE_EXTRA_TYPES}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the legacy (non-zip) format: the load error's own text has to do
        return []
    return [name for name in found if name not in allowed]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        if "GLOBAL" in line:  # torch's long message names the refused global on one line
            return line.strip()
    return (text.splitlines() or [type(err).__name__])[0][:300]


def _weights(raw: Any, path: Path, use_ema: bool) -> tuple[str, Mapping[str, Any]]:
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(raw).__name__}, not a dict of weights")
    if "format_version" in raw and "model" in raw:
        return "model", raw["model"]
    if use_ema:
        if "state_dict_ema" not in raw:
            raise CheckpointError(f"--use-ema: checkpoint {path} has no state_dict_ema (keys: {sorted(raw)[:10]})")
        return "state_dict_ema", raw["state_dict_ema"]
    if "state_dict" in raw:
        return "state_dict", raw["state_dict"]
    if "state_dict_ema" in raw:
        return "state_dict_ema", raw["state_dict_ema"]
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return "bare", raw
    raise CheckpointError(
        f"checkpoint {path} has no weights: expected a suite checkpoint (model), a timm checkpoint "
        f"(state_dict / state_dict_ema) or a bare state_dict; its keys are {sorted(map(str, raw))[:10]}"
    )


def _key_format(state_dict: Mapping[str, Any], path: Path) -> str:
    if any(k.startswith(_OFFICIAL_PREFIXES) for k in state_dict):
        return "official"
    if any(k.startswith(_SUITE_PREFIXES) for k in state_dict):
        return "suite"
    raise CheckpointError(
        f"checkpoint {path}: its weights are neither the suite's (stem.*, blocks.*) nor the official Spikformer "
        f"code's (patch_embed.*, block.*); first keys: {list(state_dict)[:5]}"
    )


def read_checkpoint(path: str | os.PathLike, *, fmt: str = "auto", trust: bool = False, use_ema: bool = False) -> Checkpoint:
    """Load `path` safely and find its weights, format and recorded architecture."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"--checkpoint {path}: no such file")
    raw = _load_object(path, trust)
    entry, weights = _weights(raw, path, use_ema)
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"checkpoint {path}: its {entry} entry is not a mapping of tensors")
    state_dict = {str(k).removeprefix("module."): v for k, v in weights.items()}
    found = "suite" if entry == "model" else _key_format(state_dict, path)  # a suite checkpoint, of any model family
    if fmt != "auto" and fmt != found:
        raise UsageError(f"--format {fmt}: checkpoint {path} holds {found}-format weights (key names {list(state_dict)[:2]})")
    args = raw.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    settings = raw.get("settings") if entry == "model" else None
    return Checkpoint(
        path=path, sha256=file_sha256(path), format=found, weights_entry=entry, state_dict=state_dict,
        settings=settings if isinstance(settings, dict) else None, args=args if isinstance(args, dict) else {},
    )


def check_architecture(checkpoint: Checkpoint, model_name: str, config) -> None:
    """The architecture the checkpoint records must be the model's; every mismatch is named."""
    problems = []
    for arg, (what, read) in OFFICIAL_ARCH_ARGS.items():
        recorded = checkpoint.args.get(arg)
        if recorded is None or isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
            continue
        actual = read(config)
        if not math.isclose(float(recorded), float(actual)):
            problems.append(f"{what}: checkpoint args.{arg}={recorded}, model {actual}")
    if checkpoint.settings:
        for key in ("model", "time_steps"):
            recorded, actual = checkpoint.settings.get(key), (model_name if key == "model" else config.time_steps)
            if recorded is not None and recorded != actual:
                problems.append(f"{key}: checkpoint trained as {recorded}, evaluating as {actual}")
    if problems:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} was trained as another architecture than {model_name} "
            f"(heads={getattr(config, 'heads', '-')}, T={config.time_steps}): " + "; ".join(problems)
            + ". A state_dict does not record heads or T, so these must agree; pick the matching --model / --time-steps"
        )


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint) -> None:
    """Strictly load the checkpoint's weights (official names converted); errors name keys and shapes."""
    from suite.models.official import load_official_state_dict, state_dict_mismatches

    if checkpoint.format == "official":
        load_official_state_dict(model, checkpoint.state_dict)
        return
    problems = state_dict_mismatches(model, checkpoint.state_dict)
    if problems:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not fit model {getattr(model, 'config', '')}: {problems}")
    model.load_state_dict(checkpoint.state_dict, strict=True)
