"""`train_loop_per_worker(config)`: the one Ray Train loop for every task, model and modality.

`config` (the TorchTrainer's train_loop_config) holds:
    settings       RunSettings.to_dict() (see suite.run_settings)
    mlflow_run_id  the run rank 0 logs into (None: report to Ray only, e.g. under a custom tracker)
    tracking_uri   its store
    ray_run_dir    this Ray run's folder (the crash hook's default marker lives there)
    progress_bars  whether rank 0 draws per-epoch progress bars (else one log line per epoch)

Every epoch: train (DistributedSampler, timm's LR schedule and mixup/cutmix, AMP), evaluate exactly over the whole eval
set with the SNN monitor, then rank 0 saves a checkpoint and all ranks call `ray.train.report`
(rank 0 with the checkpoint). A restarted worker group, or a new driver given `--resume`,
continues from `ray.train.get_checkpoint()`.
"""

from __future__ import annotations

import logging
import random
import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from suite import schema
from suite.engine import checkpoint as ckpt
from suite.engine.epoch import train_one_epoch
from suite.engine.evaluate import all_reduce_sum, evaluate
from suite.engine.crash_injection import crash_plan_from_env
from suite.engine.mixing import BatchMixer
from suite.engine.run_logger import RunLogger, epoch_metrics
from suite.engine.schedule import build_scheduler
from suite.engine.worker import lif_backend_line, start_worker
from suite.errors import UsageError
from suite.run_settings import RunSettings

log = logging.getLogger(__name__)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    settings, rank, world_size, device, logger = start_worker(config)
    try:
        _train(settings, config, rank, world_size, device, logger)
    except BaseException:
        logger.end("FAILED")  # a retry reopens it; the driver sets the final status
        raise
    logger.end("FINISHED")


def _train(settings: RunSettings, config: dict, rank: int, world_size: int, device: torch.device, logger: RunLogger) -> None:
    import ray.train
    import ray.train.torch

    from suite.metrics import SNNMonitor
    from suite.models import create_model, options_for_task
    from suite.task_registry import get_task

    task = get_task(settings.task)
    train_set, eval_set = _datasets(task, settings, rank, world_size)

    _seed_everything(settings.seed)  # the same initial weights on every rank
    bare = create_model(settings.model, **options_for_task(settings.model, task, settings.time_steps))
    # channels-last convolutions: oneDNN/cuDNN's fast layout, and what the fused BN+LIF reads without a copy
    bare = bare.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in bare.parameters())
    model = ray.train.torch.prepare_model(bare) if world_size > 1 else bare.to(device)
    bare = bare.to(device)
    lif_backend = lif_backend_line(bare, device, rank)

    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=settings.seed, drop_last=True)
    train_loader = DataLoader(
        train_set, batch_size=settings.per_worker_batch_size, sampler=sampler, drop_last=True,
        num_workers=settings.loader_workers, pin_memory=device.type == "cuda",
    )
    if len(train_loader) == 0:
        raise UsageError(
            f"the training set has {len(train_set)} samples, fewer than the batch size {settings.batch_size}; "
            "lower --batch-size or raise --synthetic-size"
        )
    optimizer = _optimizer(bare, settings)
    scheduler = build_scheduler(
        optimizer, sched=settings.schedule, epochs=settings.epochs, cooldown_epochs=settings.cooldown_epochs,
        warmup_epochs=settings.warmup_epochs, warmup_lr=settings.warmup_lr, min_lr=settings.min_lr,
        steps_per_epoch=len(train_loader), on_updates=settings.sched_on_updates,
        warmup_prefix=settings.warmup_prefix,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
    mixer = BatchMixer(
        task.num_classes, mixup=settings.mixup, cutmix=settings.cutmix, prob=settings.mixup_prob,
        switch_prob=settings.mixup_switch_prob, mode=settings.mixup_mode,
        label_smoothing=settings.label_smoothing, off_epoch=settings.mixup_off_epoch,
    )
    monitor = SNNMonitor(bare)
    crash_plan = crash_plan_from_env(_local_run_dir(config.get("ray_run_dir")))

    start_epoch, best_top1, best_epoch = 0, 0.0, -1
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = ckpt.load_checkpoint(folder)
        bare.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_top1, best_epoch = state["epoch"] + 1, state["best_top1"], state["best_epoch"]
        _restore_rng(state["rng"], rank, world_size, settings.seed, start_epoch)
        logger.backfill(state["epoch"], state["metrics"], state["firing_rates"])
        logger.note_resume(state["epoch"])
        if rank == 0:
            log.info("resumed from the checkpoint of epoch %d (best top-1 %.2f%%)", state["epoch"], best_top1)
    else:
        _seed_everything(settings.seed + 7919 * rank)  # distinct augmentation/mixup streams per rank
    logger.set_device(device, world_size, lif_backend)

    for epoch in range(start_epoch, settings.epochs):
        sampler.set_epoch(epoch)
        stats = train_one_epoch(
            model, train_loader, optimizer=optimizer, scheduler=scheduler, scaler=scaler, mixer=mixer,
            device=device, amp=settings.amp, epoch=epoch,
            epochs=settings.epochs, rank=rank, world_size=world_size, crash_plan=crash_plan,
            progress_bar=rank == 0 and bool(config.get("progress_bars")),
        )
        train_totals = all_reduce_sum(torch.tensor([stats.loss_sum, stats.samples], dtype=torch.float64), device)
        slowest, peak_mb = _all_reduce_max(torch.tensor([stats.seconds, _peak_memory_mb(device)]), device).tolist()

        _broadcast_buffers(bare, world_size)
        monitor.reset()
        result = evaluate(
            bare, eval_set, batch_size=settings.per_worker_batch_size, device=device, rank=rank,
            world_size=world_size, amp=settings.amp, monitor=monitor, loader_workers=settings.loader_workers,
        )
        snn = monitor.summary()
        if best_epoch < 0 or result.top1 >= best_top1:
            # Ties go to the later epoch, as in Ray's checkpoint retention (which keeps the newer).
            best_top1, best_epoch = result.top1, epoch
        metrics = epoch_metrics(
            epoch=epoch, train_loss=train_totals[0].item() / max(1.0, train_totals[1].item()), eval_result=result,
            best_top1=best_top1, lr=optimizer.param_groups[0]["lr"], samples_per_s=train_totals[1].item() / max(slowest, 1e-9),
            snn_summary=snn, params=n_params, peak_memory_mb=peak_mb,
        )
        firing_rates = {name: float(rate) for name, rate in snn.get("firing_rates", {}).items()}
        rng_states = _gather(ckpt.rng_state(), world_size)
        if rank == 0:
            state = {
                "model": bare.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch, "best_top1": best_top1, "best_epoch": best_epoch,
                "metrics": metrics, "firing_rates": firing_rates, "rng": rng_states, "settings": settings.to_dict(),
            }
            with tempfile.TemporaryDirectory() as folder:
                ckpt.save_checkpoint(folder, state)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
            log.info(
                "epoch %d/%d: loss %.4f, top-1 %.2f%%, top-5 %.2f%% (best %.2f%%), %.1f samples/s",
                epoch + 1, settings.epochs, metrics[schema.M_LOSS], result.top1, result.top5, best_top1,
                metrics[schema.M_SAMPLES_PER_S],
            )
        else:
            ray.train.report(metrics)
        _wait_until_committed()
        logger.log_epoch(epoch, metrics, firing_rates)

    monitor.remove()  # the logged model must not carry the monitor's hooks
    if rank == 0 and logger.enabled:
        _log_best(bare, logger)


def _local_run_dir(ray_run_dir: str | None) -> str:
    """A local folder for the run's marker files: the Ray run folder, or a temp one for s3:// and the like."""
    from suite.engine.storage import is_uri

    if not ray_run_dir:
        return tempfile.gettempdir()
    if is_uri(ray_run_dir):
        return str(Path(tempfile.gettempdir()) / Path(ray_run_dir.rstrip("/")).name)
    return ray_run_dir


def _wait_until_committed() -> None:
    """Block until Ray Train's controller has registered this epoch's checkpoint.

    `ray.train.report` only queues the report; the controller picks it up on its next poll
    (seconds later). A worker that died in between would lose the checkpoint and the restarted
    group would repeat the epoch. So no rank starts the next epoch, and rank 0 logs the epoch's
    metrics, only once the checkpoint is committed.
    """
    import ray.train

    ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)


def _datasets(task, settings: RunSettings, rank: int, world_size: int):
    def build(split: str):
        return task.build_dataset(
            split, data=settings.data, protocol=settings.protocol, time_steps=settings.time_steps,
            download=settings.download, skip_corrupt=settings.skip_corrupt, seed=settings.seed,
            synthetic_size=settings.synthetic_size, preprocess=settings.preprocess,
        )

    if settings.download and world_size > 1:
        # One downloader: the others wait, then find the files in place.
        if rank == 0:
            splits = build("train"), build("eval")
        dist.barrier()
        if rank != 0:
            splits = build("train"), build("eval")
        return splits
    return build("train"), build("eval")


def _optimizer(model: torch.nn.Module, settings: RunSettings) -> torch.optim.Optimizer:
    """timm's optimizer factory, as the official code builds it (cifar10/train.py:428): the recipe's
    optimizer, with no weight decay on biases and norm scales (1-D tensors)."""
    from timm.optim import create_optimizer_v2

    # fused: one kernel over all tensors instead of a dozen small ops per tensor (CPU and CUDA)
    return create_optimizer_v2(model, opt=settings.optimizer, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _restore_rng(states: list, rank: int, world_size: int, seed: int, epoch: int) -> None:
    if len(states) == world_size:
        ckpt.set_rng_state(states[rank])
    else:
        log.warning(
            "checkpoint has RNG states of %d workers, this run has %d: reseeding (augmentation streams change)",
            len(states), world_size,
        )
        _seed_everything(seed + 7919 * rank + 104729 * epoch)


def _gather(obj: Any, world_size: int) -> list:
    if world_size == 1 or not dist.is_initialized():
        return [obj]
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def _broadcast_buffers(model: torch.nn.Module, world_size: int) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics) before evaluating.

    DDP broadcasts them at the start of each forward pass, so after the epoch's last step every
    rank holds its own last update; evaluated as they are, each shard would see another model
    than the one rank 0 checkpoints (and `suite eval` of that checkpoint would not reproduce it).
    """
    if world_size == 1 or not dist.is_initialized():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def _all_reduce_max(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    reduced = values.to(device=device, dtype=torch.float64)
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
    return reduced.cpu()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _log_best(model: torch.nn.Module, logger: RunLogger) -> None:
    """Log the best committed checkpoint and the model with its weights."""
    import copy

    import ray.train

    reported = ray.train.get_all_reported_checkpoints()
    if not reported:
        logger.log_final(None, None)
        return
    best = max(reported, key=lambda r: (r.metrics.get(schema.M_TOP1, float("-inf")), r.metrics.get(schema.M_EPOCH, 0)))
    with best.checkpoint.as_directory() as folder:
        state_file = Path(folder) / ckpt.STATE_FILE
        state = ckpt.load_checkpoint(state_file)
        best_model = copy.deepcopy(model).cpu()
        best_model.load_state_dict(state["model"])
        logger.log_final(state_file, best_model.eval())
