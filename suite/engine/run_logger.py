"""What rank 0 logs into the run's MLflow run: per-epoch metrics, firing-rate tables, final artifacts.

Only rank 0 creates a `RunLogger`; with no MLflow run id (a caller that tracks elsewhere) every
method is a no-op. Epoch metrics are logged after the epoch's checkpoint is committed, so a
restarted worker group never logs an epoch twice; an epoch whose checkpoint was committed but whose
metrics were lost in a crash is logged again from the checkpoint (`backfill`).
"""

from __future__ import annotations

import csv
import io
import logging
import platform
from pathlib import Path
from typing import Any, Mapping

import torch

from suite import schema

log = logging.getLogger(__name__)

LAYER_FIRING_RATE_PREFIX = schema.M_FIRING_RATE + "/"
FIRING_RATE_DIR = "firing_rates"
BEST_CHECKPOINT_DIR = "checkpoints/best"
TAG_RESUMED_FROM_EPOCH = "suite.resumed_from_epoch"  # the last checkpoint an attempt continued from


class RunLogger:
    def __init__(self, tracking_uri: str | None, run_id: str | None):
        self.run_id = run_id
        self.enabled = bool(tracking_uri and run_id)
        if self.enabled:
            from suite.tracking import attach_run

            attach_run(tracking_uri, run_id, system_metrics=True)

    def set_device(self, device: torch.device, world_size: int, lif_backend: str) -> None:
        if not self.enabled:
            return
        import mlflow

        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        else:
            name = platform.processor() or platform.machine()
        mlflow.set_tags({schema.TAG_DEVICE: f"{device.type}:{name} x{world_size}", schema.TAG_LIF_BACKEND: lif_backend})

    def last_logged_epoch(self) -> int:
        """The highest epoch whose metrics are in the run, -1 if none."""
        if not self.enabled:
            return -1
        from mlflow.tracking import MlflowClient

        history = MlflowClient().get_metric_history(self.run_id, schema.M_EPOCH)
        return int(max((m.value for m in history), default=-1))

    def log_epoch(self, epoch: int, metrics: Mapping[str, float], firing_rates: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        import mlflow

        values = {key: float(value) for key, value in metrics.items()}
        values.update({LAYER_FIRING_RATE_PREFIX + layer: float(rate) for layer, rate in firing_rates.items()})
        mlflow.log_metrics(values, step=epoch)
        if firing_rates:
            mlflow.log_text(firing_rate_csv(epoch, firing_rates), f"{FIRING_RATE_DIR}/epoch_{epoch:04d}.csv")

    def backfill(self, epoch: int, metrics: Mapping[str, float], firing_rates: Mapping[str, float]) -> None:
        """Log a restored checkpoint's epoch if a crash came between its commit and its logging."""
        if self.enabled and metrics and self.last_logged_epoch() < epoch:
            log.info("logging epoch %d's metrics from its checkpoint (lost in the crash)", epoch)
            self.log_epoch(epoch, metrics, firing_rates)

    def note_resume(self, epoch: int) -> None:
        """Record that this attempt continued from the checkpoint of `epoch` (a restart or --resume)."""
        if self.enabled:
            import mlflow

            mlflow.set_tag(TAG_RESUMED_FROM_EPOCH, str(epoch))

    def log_final(self, best_state_file: Path | None, model: torch.nn.Module | None) -> None:
        """The best checkpoint file, the best model (MLflow pytorch flavour), then FINISHED."""
        if not self.enabled:
            return
        import mlflow

        if best_state_file is not None:
            mlflow.log_artifact(str(best_state_file), BEST_CHECKPOINT_DIR)
        if model is not None:
            import mlflow.pytorch

            # pickle, not the torch.export default, which fixes the batch size into the graph;
            # explicit requirements skip MLflow's slow inference of them in a subprocess.
            mlflow.pytorch.log_model(
                model,
                name="model",
                serialization_format="pickle",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "spikformer-suite"],
            )

    def end(self, status: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.end_run(status=status)


def firing_rate_csv(epoch: int, firing_rates: Mapping[str, float]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["epoch", "layer", "firing_rate"])
    for layer, rate in firing_rates.items():
        writer.writerow([epoch, layer, f"{float(rate):.6g}"])
    return out.getvalue()


def epoch_metrics(
    *,
    epoch: int,
    train_loss: float,
    eval_result: Any,
    best_top1: float,
    lr: float,
    samples_per_s: float,
    snn_summary: Mapping[str, Any],
    params: int,
    peak_memory_mb: float,
) -> dict[str, float]:
    """The schema's per-epoch metrics (names in suite.schema; the leaderboard reads them).

    The first four are the ones Ray Tune's trial table shows: epoch, loss, best top-1, top-1.
    """
    return {
        schema.M_EPOCH: float(epoch),
        schema.M_LOSS: float(train_loss),
        schema.M_BEST_TOP1: float(best_top1),
        **eval_metrics(eval_result=eval_result, snn_summary=snn_summary, params=params),
        schema.M_LR: float(lr),
        schema.M_SAMPLES_PER_S: float(samples_per_s),
        schema.M_PEAK_MEMORY: float(peak_memory_mb),
    }


def eval_metrics(*, eval_result: Any, snn_summary: Mapping[str, Any], params: int) -> dict[str, float]:
    """What one pass over the eval set measures: accuracy, loss and the SNN figures (`suite run`
    logs them every epoch, `suite eval` once)."""
    return {
        schema.M_TOP1: eval_result.top1,
        schema.M_TOP5: eval_result.top5,
        schema.M_EVAL_LOSS: eval_result.loss,
        schema.M_SOPS: float(snn_summary.get("sops_per_sample", 0.0)) / 1e9,
        schema.M_ENERGY: float(snn_summary.get("energy_mj_per_sample", 0.0)),
        schema.M_FIRING_RATE: float(snn_summary.get("mean_firing_rate", 0.0)),
        schema.M_PARAMS: params / 1e6,
    }
