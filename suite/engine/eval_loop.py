"""`eval_loop_per_worker(config)`: one pass of the engine's exact evaluation on Ray Train workers.

`config` is `build_trainer`'s loop config (settings, mlflow_run_id, tracking_uri, ...) plus
    state_dict   a Ray ObjectRef to the weights, already converted to the suite's key names and
                 checked against the model by the driver (workers never unpickle the file)
    neurobench   whether to compute NeuroBench's metrics in the same pass

Every worker builds the model exactly as the training loop does (channels-last, the same
per-worker batch size), evaluates its shard with `suite.engine.evaluate.evaluate`, whose counts
are all-reduced; rank 0 logs the metrics into the eval's MLflow run. So a
checkpoint of a `suite run` evaluated with the run's settings gives that run's numbers.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist

from suite import schema
from suite.engine.evaluate import all_reduce_sum, evaluate
from suite.engine.run_logger import eval_metrics
from suite.engine.worker import lif_backend_line, start_worker
from suite.run_settings import RunSettings

log = logging.getLogger(__name__)


def eval_loop_per_worker(config: dict[str, Any]) -> None:
    settings, rank, world_size, device, logger = start_worker(config)
    try:
        metrics, firing_rates, lif_backend = evaluate_checkpoint(settings, config, rank, world_size, device)
        logger.set_device(device, world_size, lif_backend)
        logger.log_epoch(0, metrics, firing_rates)  # the driver reads them back from MLflow
    except BaseException:
        logger.end("FAILED")  # the driver sets the final status
        raise
    logger.end("FINISHED")


def evaluate_checkpoint(
    settings: RunSettings, config: dict, rank: int, world_size: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float], str]:
    """(metrics, per-layer firing rates, what the LIF layers ran on) of the weights in
    `config["state_dict"]` on the eval split."""
    import ray

    from suite.metrics import SNNMonitor
    from suite.models import create_model, options_for_task
    from suite.task_registry import get_task

    task = get_task(settings.task)
    eval_set = _eval_dataset(task, settings, rank, world_size)
    model = create_model(settings.model, **options_for_task(settings.model, task, settings.time_steps))
    model = model.to(memory_format=torch.channels_last)  # as the training loop evaluates it
    model.load_state_dict(ray.get(config["state_dict"]), strict=True)
    model = model.to(device).eval()
    lif_backend = lif_backend_line(model, device, rank)
    monitor = SNNMonitor(model)
    probe = None
    if config.get("neurobench"):
        from suite.metrics.neurobench_probe import NeuroBenchProbe

        probe = NeuroBenchProbe(model)
    result = evaluate(
        model, eval_set, batch_size=settings.per_worker_batch_size, device=device, rank=rank, world_size=world_size,
        amp=settings.amp, monitor=monitor, loader_workers=settings.loader_workers, on_batch=probe,
    )
    snn = monitor.summary()
    metrics = eval_metrics(eval_result=result, snn_summary=snn, params=sum(p.numel() for p in model.parameters()))
    metrics[schema.M_EVAL_SAMPLES] = float(result.total)
    if probe is not None:
        metrics.update(probe.metrics(all_reduce_sum(probe.counts_tensor(), device)))
        probe.close()
    monitor.remove()
    if rank == 0:
        log.info(
            "evaluated %d samples: top-1 %.2f%%, top-5 %.2f%%, loss %.4f",
            result.total, result.top1, result.top5, result.loss,
        )
    return metrics, {name: float(rate) for name, rate in snn["firing_rates"].items()}, lif_backend


def _eval_dataset(task, settings: RunSettings, rank: int, world_size: int):
    def build():
        return task.build_dataset(
            "eval", data=settings.data, protocol=settings.protocol, time_steps=settings.time_steps,
            download=settings.download, skip_corrupt=settings.skip_corrupt, seed=settings.seed,
            synthetic_size=settings.synthetic_size,
        )

    if settings.download and world_size > 1:  # one downloader; the others find the files in place
        if rank == 0:
            dataset = build()
        dist.barrier()
        return dataset if rank == 0 else build()
    return build()
