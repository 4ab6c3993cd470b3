"""Training checkpoints: one `state.pt` per epoch, loadable with `torch.load(weights_only=True)`.

A checkpoint holds everything needed to continue exactly: model, optimizer, LR scheduler and
grad-scaler states, the finished epoch, the best top-1 so far (and its epoch), the epoch's metrics
and the RNG states of every worker. RNG states are stored as tensors and plain lists (never numpy
objects or tuples of arbitrary classes) so that the safe `weights_only` loader accepts them.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.errors import CorruptDataError

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU and CUDA) in weights_only-safe types."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` to `<folder>/state.pt` atomically (a crash never leaves half a file)."""
    path = Path(folder) / STATE_FILE
    partial = path.with_suffix(".pt.partial")
    torch.save({"format_version": FORMAT_VERSION, **state}, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(folder_or_file: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (`weights_only=True`); a broken file raises CorruptDataError."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / STATE_FILE
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # unpickling errors come in many types; all mean "not a usable checkpoint"
        raise CorruptDataError(f"checkpoint {path} cannot be loaded: {type(err).__name__}: {err}") from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CorruptDataError(f"checkpoint {path} is not a suite checkpoint of format {FORMAT_VERSION}")
    return state
