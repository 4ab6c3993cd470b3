"""What every Ray Train worker of the suite does first, training (`train_loop`) or evaluating
(`eval_loop`): its settings, rank, torch threads, device, and rank 0's MLflow logger."""

from __future__ import annotations

import logging
from typing import Any

import torch

from suite.engine.ray_private_api import quiet_train_report_log
from suite.engine.run_logger import RunLogger
from suite.run_settings import RunSettings

log = logging.getLogger(__name__)


def start_worker(config: dict[str, Any]) -> tuple[RunSettings, int, int, torch.device, RunLogger]:
    """(settings, rank, world size, device, logger) from a loop config; only rank 0's logger logs."""
    import ray.train
    import ray.train.torch

    quiet_train_report_log()
    settings = RunSettings.from_dict(config["settings"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, settings.cpus_per_worker))
    device = ray.train.torch.get_device()
    logger = RunLogger(config.get("tracking_uri"), config.get("mlflow_run_id")) if rank == 0 else RunLogger(None, None)
    return settings, rank, world_size, device, logger


def lif_backend_line(model: torch.nn.Module, device: torch.device, rank: int) -> str:
    """What the model's LIF layers run on here (the native kernels get built now, not in the first
    step); rank 0 logs it, so that a slow fallback shows in the run's output."""
    from suite.models.neuron import describe_backends

    line = describe_backends(model, device)
    if rank == 0:
        log.info("LIF backend: %s", line)
    return line
