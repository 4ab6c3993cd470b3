"""The driver of `suite eval`: one checkpoint, the task's whole eval split, one MLflow run.

Everything about the checkpoint is settled before Ray starts: the file is read safely
(`suite.models.checkpoints`), its recorded architecture is checked against the model, and its
weights are loaded into the model once here, so a wrong file, head count or key fails in seconds
with the keys and shapes named. The workers then get the converted weights through Ray's object
store and run the engine's exact evaluation (`suite.engine.eval_loop`) on the same worker group
`suite run` uses (`build_trainer`).

Settings: the task's recipe, then what the checkpoint records (a `suite run`'s config.yaml, or
the model and T in an official checkpoint's args), then flags. `--run ID` evaluates that run's
best checkpoint with its own config, so it reproduces the run's best epoch exactly.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suite import schema, tracking
from suite.engine.config import resolve_settings
from suite.errors import UsageError
from suite.models.checkpoints import Checkpoint, check_architecture, load_weights, read_checkpoint
from suite.run_settings import RunSettings

log = logging.getLogger(__name__)

BEST_CHECKPOINT_ARTIFACT = "checkpoints/best/state.pt"  # RunLogger.log_final's artifact
MODEL_CONFIG_ARTIFACT = "model_config.yaml"
# What an evaluation takes over from the run that trained the checkpoint (flags still override it).
INHERITED_SETTINGS = (
    "protocol", "model", "time_steps", "data", "synthetic_size", "seed", "batch_size", "amp", "workers",
    "gpus_per_worker", "cpus_per_worker", "loader_workers", "skip_corrupt", "experiment",
)
# The settings an evaluation depends on or runs with: its MLflow params (training ones would mislead).
EVAL_PARAMS = (
    "task", "protocol", "model", "data", "time_steps", "batch_size", "amp", "seed", "synthetic_size", "workers",
    "gpus_per_worker", "cpus_per_worker", "loader_workers", "experiment", "tracking_uri", "tracking_uri_source",
    "address", "address_source",
)


@dataclass(frozen=True)
class EvalRequest:
    task: str | None
    checkpoint: str | None  # a file, or
    run_id: str | None  # a `suite run` whose best checkpoint to take
    overrides: dict[str, Any] = field(default_factory=dict)  # RunSettings fields from flags; None: unset
    fmt: str = "auto"
    trust: bool = False
    use_ema: bool = False
    neurobench: bool = False


@dataclass
class EvalPlan:
    settings: RunSettings
    checkpoint: Checkpoint
    origin: str  # "mlflow-run:<id>" or the file's path
    model_config: Any  # the model family's config, e.g. a SpikformerConfig
    state_dict: dict  # the weights under the suite's key names, checked against the model
    neurobench: bool

    @property
    def format_tag(self) -> str:
        return f"{self.checkpoint.format} ({self.checkpoint.weights_entry})"

    def source_epochs(self) -> int | None:
        recorded = (self.checkpoint.settings or {}).get("epochs") or self.checkpoint.args.get("epochs")
        return recorded if isinstance(recorded, int) else None


@dataclass
class EvalOutcome:
    run_id: str
    tracking_uri: str
    experiment: str
    metrics: dict[str, Any]
    seconds: float
    plan: EvalPlan


def plan_eval(request: EvalRequest) -> EvalPlan:
    """Read and check the checkpoint, resolve the settings, load the weights once: before Ray."""
    from suite.models import get_family, model_config, options_for_task
    from suite.task_registry import get_task

    if bool(request.checkpoint) == bool(request.run_id):
        raise UsageError("give exactly one of --checkpoint PATH and --run MLFLOW_RUN_ID")
    tracking_uri = tracking.resolve_tracking_uri(request.overrides.get("tracking_uri"))
    with tempfile.TemporaryDirectory(prefix="suite-eval-") as folder:
        if request.run_id:
            path, stored = _run_checkpoint(tracking_uri, request.run_id, Path(folder))
            origin = f"mlflow-run:{request.run_id}"
        else:
            path, stored, origin = Path(request.checkpoint), None, str(Path(request.checkpoint).expanduser().resolve())
        checkpoint = read_checkpoint(path, fmt=request.fmt, trust=request.trust, use_ema=request.use_ema)
    recorded = stored or checkpoint.settings or {}
    task_name = request.task or recorded.get("task")
    if not task_name:
        raise UsageError(f"--task is required: checkpoint {checkpoint.path} does not record the task it was trained on")
    base = {k: recorded[k] for k in INHERITED_SETTINGS if recorded.get(k) is not None}
    if not recorded:
        base.update(checkpoint.inferred_model())
    given = {k: v for k, v in request.overrides.items() if v is not None}
    settings = resolve_settings(task_name, {**base, **given})
    if request.neurobench:
        from suite.metrics.neurobench_probe import require_neurobench

        require_neurobench()
        if settings.amp != "off":
            raise UsageError(f"--neurobench replays layers in float32; evaluate with --amp off (now {settings.amp})")
    task = get_task(settings.task)
    config = model_config(settings.model, **options_for_task(settings.model, task, settings.time_steps))
    check_architecture(checkpoint, settings.model, config)
    model = get_family(settings.model).build(config)
    load_weights(model, checkpoint)
    return EvalPlan(settings, checkpoint, origin, config, model.state_dict(), request.neurobench)


def _run_checkpoint(tracking_uri: str, run_id: str, folder: Path) -> tuple[Path, dict]:
    """The best checkpoint file of `suite run` run `run_id` and its config.yaml settings."""
    from mlflow.artifacts import download_artifacts

    from suite.engine.driver import CONFIG_ARTIFACT

    tracking.check_tracking_server(tracking_uri)
    try:
        run = tracking.client(tracking_uri).get_run(run_id)
    except Exception as err:
        raise UsageError(f"--run {run_id}: no such MLflow run in {tracking_uri} ({str(err).splitlines()[0]})") from err
    if run.data.tags.get(schema.TAG_KIND) != schema.KIND_RUN:
        raise UsageError(f"--run {run_id}: not a `suite run` run (its {schema.TAG_KIND} tag is {run.data.tags.get(schema.TAG_KIND)!r})")
    try:
        config = download_artifacts(run_id=run_id, artifact_path=CONFIG_ARTIFACT, tracking_uri=tracking_uri, dst_path=str(folder))
        state = download_artifacts(
            run_id=run_id, artifact_path=BEST_CHECKPOINT_ARTIFACT, tracking_uri=tracking_uri, dst_path=str(folder)
        )
    except Exception as err:  # MlflowException or OSError: either way the artifact is not there
        raise UsageError(
            f"--run {run_id} ({run.info.status}): it has no {BEST_CHECKPOINT_ARTIFACT} artifact; a `suite run` logs its "
            f"best checkpoint when it finishes ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    return Path(state), yaml.safe_load(Path(config).read_text())


def eval_tags(plan: EvalPlan, session) -> dict[str, str]:
    from suite.engine.driver import run_tags

    settings, checkpoint = plan.settings, plan.checkpoint
    tags = run_tags(settings, session)
    hashed = {k: v for k, v in settings.hashed_fields().items() if k in EVAL_PARAMS}
    tags.update({
        schema.TAG_KIND: schema.KIND_EVAL,
        schema.TAG_CHECKPOINT_SHA256: checkpoint.sha256,
        schema.TAG_CHECKPOINT_FORMAT: plan.format_tag,
        schema.TAG_CHECKPOINT_ORIGIN: plan.origin,
        schema.TAG_MODEL_CONFIG: json.dumps(plan.model_config.to_dict(), sort_keys=True),
        # One checkpoint on one data set: repeated evaluations of it aggregate, nothing else does.
        schema.TAG_CONFIG_HASH: tracking.config_hash(
            {**hashed, "sha256": checkpoint.sha256, "data": tags[schema.TAG_DATA], "kind": schema.KIND_EVAL}
        ),
    })
    return tags


def eval_params(plan: EvalPlan) -> dict[str, Any]:
    params = {k: v for k, v in plan.settings.to_dict().items() if k in EVAL_PARAMS}
    params.update(checkpoint=plan.origin, checkpoint_format=plan.format_tag, neurobench=plan.neurobench)
    params.update({f"model_config.{k}": v for k, v in plan.model_config.to_dict().items()})
    if plan.source_epochs() is not None:
        params["epochs"] = plan.source_epochs()  # the training the checkpoint had, for the boards
    return params


def start_eval(plan: EvalPlan) -> EvalOutcome:
    """Ray, a new MLflow run (kind eval), one evaluation pass; returns the outcome."""
    from suite.engine.driver import announce, preflight, stoppable_run, with_cpus
    from suite.engine.ray_session import start_ray

    settings = plan.settings
    preflight(settings)
    announce(settings)
    session = start_ray(settings.address)
    with stoppable_run(session, settings.tracking_uri) as run:
        # keep: the run's own CPUs per worker (same threads, same arithmetic) when they fit here
        plan.settings = settings = with_cpus(settings, session, keep=True)
        name = f"eval-{settings.task}-{settings.model}-T{settings.time_steps}-{plan.checkpoint.sha256[:8]}"
        run.id = tracking.create_run(
            settings.tracking_uri, settings.experiment, run_name=name, tags=eval_tags(plan, session), params=eval_params(plan)
        )
        tracking.client(settings.tracking_uri).log_text(
            run.id, yaml.safe_dump(plan.model_config.to_dict(), sort_keys=False), MODEL_CONFIG_ARTIFACT
        )
        log.info("MLflow run %s: evaluating %s (%s)", run.id, plan.origin, plan.format_tag)
        return _evaluate_on_ray(plan, run.id, session.embedded)


def _evaluate_on_ray(plan: EvalPlan, run_id: str, embedded: bool) -> EvalOutcome:
    import ray

    from suite.engine.driver import build_trainer, fit_tracked
    from suite.engine.eval_loop import eval_loop_per_worker

    settings = plan.settings
    trainer = build_trainer(
        settings, ray_run_name=f"suite-eval-{run_id}", storage_path=settings.storage_path, mlflow_run_id=run_id,
        progress_bars=sys.stdout.isatty(), embedded=embedded, loop_per_worker=eval_loop_per_worker,
        loop_extras={"state_dict": ray.put(plan.state_dict), "neurobench": plan.neurobench},
    )
    _, seconds = fit_tracked(trainer, settings.tracking_uri, run_id, what="evaluation")
    # Ray Train V2 keeps only metrics reported with a checkpoint; rank 0 logged them to MLflow.
    metrics = tracking.client(settings.tracking_uri).get_run(run_id).data.metrics
    return EvalOutcome(
        run_id=run_id, tracking_uri=settings.tracking_uri, experiment=settings.experiment,
        metrics=dict(metrics), seconds=seconds, plan=plan,
    )
