"""One Tune trial: the run engine's TorchTrainer with the trial's settings, reporting to Tune.

This is the Ray Train V2 pattern for tuning: the Tune function is only a driver; it builds a
`TorchTrainer` (whose workers do the training) and passes `TuneReportCallback`, which forwards
every `ray.train.report` of rank 0 to Tune, where ASHA reads it. The Ray Train run name contains
the trial id, so a restarted trial resumes its own checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs besides its sampled parameters (passed with `tune.with_parameters`)."""

    task: str
    base_settings: dict[str, Any]  # RunSettings.to_dict() of the sweep, before sampling
    parent_run_id: str
    sweep_name: str
    tracking_uri: str
    experiment: str
    train_storage: str  # where the trials' Ray Train runs keep their checkpoints
    embedded: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_settings(task: str, base_settings: dict[str, Any], sampled: dict[str, Any]):
    """The sweep's settings with the trial's sampled values, validated like `suite run` flags."""
    from suite.engine.config import resolve_settings

    overrides = {k: v for k, v in base_settings.items() if k != "task"}
    overrides.update(sampled)
    return resolve_settings(task, overrides)


def run_trial(config: dict[str, Any], context: SweepContext) -> None:
    """The Tune function: one trial = one Ray Train run = one nested MLflow run."""
    import ray
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from suite import tracking
    from suite.engine.driver import CONFIG_ARTIFACT, build_trainer, run_tags
    from suite.engine.ray_session import RaySession
    from suite.tune import runs

    settings = trial_settings(context.task, context.base_settings, config)
    trial_id = ray.tune.get_context().get_trial_id()
    session = RaySession(address=ray.get_runtime_context().gcs_address, embedded=context.embedded, started_here=False)
    resumed = runs.find_trial_run(context.tracking_uri, context.parent_run_id, trial_id) is not None
    run_id = runs.get_or_create_trial_run(
        context.tracking_uri,
        context.experiment,
        parent_run_id=context.parent_run_id,
        sweep=context.sweep_name,
        trial_id=trial_id,
        run_name=f"{settings.task}-{settings.model}-T{settings.time_steps}-{trial_id}",
        tags=run_tags(settings, session),
        params=settings.to_dict(),
    )
    if resumed:
        log.info("trial %s continues its MLflow run %s", trial_id, run_id)
    else:
        tracking.client(context.tracking_uri).log_text(run_id, settings.to_yaml(), CONFIG_ARTIFACT)

    trainer = build_trainer(
        settings,
        ray_run_name=f"{context.sweep_name}-{trial_id}",
        storage_path=context.train_storage,
        mlflow_run_id=run_id,
        callbacks=[TuneReportCallback()],
        embedded=context.embedded,
    )
    trainer.fit()
