"""Exact distributed evaluation: every eval sample is counted once, whatever the number of workers.

Worker `rank` of `world_size` evaluates the indices `rank, rank + world_size, ...` (no padding,
unlike DistributedSampler, which repeats samples so that shards are equal), and the correct
counts, totals and loss sums are all-reduced. Ranks may see one batch more or less than others,
so evaluation must run on the bare model, never through DDP (whose forward is a collective).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset


@dataclass(frozen=True)
class EvalResult:
    correct1: int
    correct5: int
    total: int
    loss_sum: float

    @property
    def top1(self) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * self.correct1 / max(1, self.total)

    @property
    def top5(self) -> float:
        return 100.0 * self.correct5 / max(1, self.total)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.total)


def shard_indices(size: int, rank: int, world_size: int) -> range:
    """This rank's share of `size` samples: disjoint across ranks, together exactly all of them."""
    return range(rank, size, world_size)


def autocast_context(amp: str, device: torch.device):
    if amp == "off":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def all_reduce_sum(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """SUM over all workers (identity outside a process group); float64 keeps counts exact."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    reduced = values.to(device=device, dtype=torch.float64)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset,
    *,
    batch_size: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    amp: str = "off",
    monitor=None,
    loader_workers: int = 0,
    on_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> EvalResult:
    """Top-1/top-5 and mean cross-entropy of `model` on the whole `dataset`, summed over workers.

    With an `SNNMonitor`, its counts are recorded during the forward passes and all-reduced, so
    `monitor.summary()` afterwards covers the whole eval set. `on_batch(x, y, logits)` runs after
    each forward pass, outside the monitor's recording (e.g. NeuroBench's metrics, which replay
    layers on copies of their inputs); the caller reduces whatever it accumulates.
    """
    was_training = model.training
    model.eval()
    shard = Subset(dataset, list(shard_indices(len(dataset), rank, world_size)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=loader_workers)
    totals = torch.zeros(4, dtype=torch.float64)  # correct1, correct5, total, loss_sum
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True).long()
        with monitor.recording() if monitor is not None else nullcontext(), autocast_context(amp, device):
            logits = model(x)
        logits = logits.float()
        if on_batch is not None:
            on_batch(x, y, logits)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == y[:, None]
        totals += torch.tensor(
            [
                hits[:, 0].sum().item(),
                hits.any(dim=1).sum().item(),
                y.numel(),
                F.cross_entropy(logits, y, reduction="sum").item(),
            ],
            dtype=torch.float64,
        )
    totals = all_reduce_sum(totals, device)
    if monitor is not None:
        monitor.load_counts(all_reduce_sum(monitor.counts_tensor(), device))
    model.train(was_training)
    return EvalResult(
        correct1=int(round(totals[0].item())),
        correct5=int(round(totals[1].item())),
        total=int(round(totals[2].item())),
        loss_sum=float(totals[3].item()),
    )
