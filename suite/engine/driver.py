"""The driver of `suite run`: checks, one MLflow run, one Ray Train TorchTrainer, the outcome.

Order matters: the tracking store is probed and the model name and data are checked before Ray
starts (a typo must not cost a cluster start-up); the MLflow run is created once Ray is up (its
tags record the Ray address). Each fresh run gets a Ray run name containing its MLflow run id, so
it can never silently resume an older run; `--resume RUN_ID` reuses the stored name and storage
folder, and Ray Train then restores the latest committed checkpoint.

Ctrl-C and SIGTERM (`kill`, `suite jobs stop`) take one path (`stoppable_run`, `stop_signals.py`):
the MLflow run ends KILLED, Ray Train is aborted and Ray shut down, the registered checkpoints
stay for `--resume`, and the CLI exits 128 + the signal number.

`build_trainer` is the reusable part: `suite tune` builds one TorchTrainer per trial with it.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from suite import __version__, schema, tracking
from suite.engine import storage
from suite.engine.crash_injection import CRASH_ENV
from suite.engine.ray_private_api import torch_trainer_class
from suite.engine.ray_session import (
    EMBEDDED, RaySession, auto_cpus_per_worker, check_resources, enable_train_v2, start_ray,
)
from suite.engine.stop_signals import stop_signals_interrupt
from suite.errors import SuiteError, UsageError
from suite.run_settings import RunSettings
from suite.tracking import Resolved

log = logging.getLogger(__name__)

CONFIG_ARTIFACT = "config.yaml"
CHECKPOINTS_TO_KEEP = 2  # best two by top-1; Ray always keeps the latest as well
FORWARDED_ENV_PREFIXES = ("MLFLOW_TRACKING_", "MLFLOW_SYSTEM_METRICS_")
ABORT_TIMEOUT_S = 10.0  # Ray Train's abort (workers stopped, its run state ABORTED) takes about 1 s


@dataclass
class RunOutcome:
    run_id: str
    tracking_uri: str
    experiment: str
    metrics: dict[str, Any]  # the last epoch's metrics (suite.schema names)
    seconds: float
    ray_run_dir: str


def build_trainer(
    settings: RunSettings,
    *,
    ray_run_name: str,
    storage_path: str,
    mlflow_run_id: str | None = None,
    callbacks: Sequence[Any] = (),
    progress_bars: bool = False,
    embedded: bool = True,
    loop_per_worker=None,
    loop_extras: dict[str, Any] | None = None,
):
    """A Ray Train V2 TorchTrainer running `train_loop_per_worker` with `settings`.

    `mlflow_run_id`: the run rank 0 logs into (None: report to Ray only). `callbacks`: Ray Train
    UserCallbacks, e.g. Tune's report callback. `progress_bars`: per-epoch bars from rank 0 (for a
    terminal; without them each epoch still logs one summary line). gloo for CPU workers, nccl
    for GPU workers. `embedded`: Ray was started by this process (see `torch_trainer_class`).
    `loop_per_worker` replaces the training loop (`suite eval` runs its evaluation loop on the same
    worker group), and `loop_extras` adds to the config it receives.
    """
    enable_train_v2()
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from suite.engine.train_loop import train_loop_per_worker

    storage_path = str(storage_path)
    resources = {"CPU": max(1, settings.cpus_per_worker)}
    if settings.use_gpu:
        resources["GPU"] = settings.gpus_per_worker
    loop_config = {
        "settings": settings.to_dict(),
        "mlflow_run_id": mlflow_run_id,
        "tracking_uri": settings.tracking_uri,
        "ray_run_dir": storage.join(storage_path, ray_run_name),
        "progress_bars": progress_bars,
        **(loop_extras or {}),
    }
    env_vars = forwarded_env()
    return torch_trainer_class(embedded)(
        loop_per_worker or train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if settings.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=settings.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=ray_run_name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=CHECKPOINTS_TO_KEEP, checkpoint_score_attribute=schema.M_TOP1, checkpoint_score_order="max"
            ),
            callbacks=list(callbacks),
            worker_runtime_env={"env_vars": env_vars} if env_vars else None,
            # Ray Train's INFO lines repeat every reported metric dict; ours say it once, readably.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )


def forwarded_env() -> dict[str, str]:
    """Environment the workers need that a cluster's (or an already running Ray's) workers lack."""
    import os

    return {
        key: value for key, value in os.environ.items()
        if key == CRASH_ENV or key.startswith(FORWARDED_ENV_PREFIXES)
    }


def run_tags(settings: RunSettings, session: RaySession) -> dict[str, str]:
    data = schema.DATA_SYNTHETIC if settings.data == schema.DATA_SYNTHETIC else _data_tag(settings)
    return {
        schema.TAG_KIND: "run",
        schema.TAG_TASK: settings.task,
        schema.TAG_PROTOCOL: settings.protocol,
        schema.TAG_MODEL: settings.model,
        schema.TAG_TIME_STEPS: str(settings.time_steps),
        schema.TAG_DATA: data,
        schema.TAG_SEED: str(settings.seed),
        schema.TAG_CONFIG_HASH: tracking.config_hash(settings.hashed_fields() | {"data": data}),
        schema.TAG_VERSION: __version__,
        schema.TAG_GIT_COMMIT: tracking.git_commit(),
        schema.TAG_DEVICE: "cuda" if settings.use_gpu else "cpu",
        schema.TAG_RAY_ADDRESS: session.address + (" (embedded)" if session.embedded else ""),
    }


def _data_tag(settings: RunSettings) -> str:
    from suite.task_registry import get_task

    return tracking.data_fingerprint(get_task(settings.task).data_dir(settings.data))


def preflight(settings: RunSettings) -> None:
    """Everything checkable before Ray starts: tracking store, model name, data presence."""
    from suite.models import model_config, options_for_task
    from suite.task_registry import get_task

    tracking.check_tracking_server(settings.tracking_uri)
    storage.check_storage(settings.storage_path)
    if settings.address is None:
        _check_machine_resources(settings)
    elif settings.tracking_uri.startswith("sqlite:///") or not storage.is_uri(settings.storage_path):
        log.warning(
            "Ray at %s with the store %s and checkpoints in %s: on a multi-node cluster rank 0 may run on "
            "another node, which cannot write a local SQLite file, and every node must reach the checkpoints; "
            "use --tracking-uri http://MLFLOW_SERVER and --storage-path s3://BUCKET/PATH (or a shared folder)",
            settings.address, settings.tracking_uri, settings.storage_path,
        )
    task = get_task(settings.task)
    model_config(settings.model, **options_for_task(settings.model, task, settings.time_steps))
    if settings.data != schema.DATA_SYNTHETIC and not settings.download and not task.is_available(settings.data):
        raise task.missing_data_error(settings.data, "pass --download to fetch it, or --data synthetic to try the pipeline")


def _check_machine_resources(settings: RunSettings) -> None:
    """An embedded Ray has this machine's CPUs and GPUs only; say so before starting it."""
    import torch

    from suite.engine.ray_session import machine_cpus

    cpus = settings.cpus_per_worker or 1
    if settings.workers * cpus > machine_cpus():
        raise UsageError(
            f"--workers {settings.workers} x --cpus-per-worker {cpus} needs {settings.workers * cpus} CPUs, this "
            f"machine has {machine_cpus()}: lower them or join a cluster with --address"
        )
    gpus = torch.cuda.device_count()
    if settings.use_gpu and settings.workers * settings.gpus_per_worker > gpus:
        raise UsageError(
            f"--workers {settings.workers} x --gpus-per-worker {settings.gpus_per_worker:g} needs "
            f"{settings.workers * settings.gpus_per_worker:g} GPUs, this machine has {gpus}"
        )


def announce(settings: RunSettings) -> None:
    """Log where the run's services are and where each setting came from (also in its params)."""
    log.info(
        "MLflow tracking store: %s (from %s); Ray: %s (from %s); checkpoints: %s",
        settings.tracking_uri, settings.tracking_uri_source, settings.address or EMBEDDED, settings.address_source,
        settings.storage_path,
    )


def start_run(settings: RunSettings) -> RunOutcome:
    """A fresh `suite run`: preflight, Ray, a new MLflow run, training. Returns the outcome."""
    preflight(settings)  # bad input fails first, with one error line
    announce(settings)
    log.info(
        "global batch %d: %d per worker x %d worker(s)",
        settings.per_worker_batch_size * settings.workers, settings.per_worker_batch_size, settings.workers,
    )
    if settings.recipe_deviations:  # also an MLflow param of the run
        log.warning("this run differs from the %s recipe: %s", settings.task, settings.recipe_deviations)
    session = start_ray(settings.address)
    with stoppable_run(session, settings.tracking_uri) as run:
        settings = with_cpus(settings, session)
        tags = run_tags(settings, session)
        run_name = f"{settings.task}-{settings.model}-T{settings.time_steps}-s{settings.seed}"
        run.id = tracking.create_run(settings.tracking_uri, settings.experiment, run_name=run_name, tags=tags,
                                     params=settings.to_dict())
        ray_run_name = f"suite-{run.id}"
        client = tracking.client(settings.tracking_uri)
        client.set_tag(run.id, tracking.TAG_RAY_RUN_NAME, ray_run_name)
        client.set_tag(run.id, tracking.TAG_RAY_STORAGE, settings.storage_path)
        client.log_text(run.id, settings.to_yaml(), CONFIG_ARTIFACT)
        log.info("MLflow run %s in %s; Ray run %s", run.id, settings.tracking_uri,
                 storage.join(settings.storage_path, ray_run_name))
        return _fit(settings, run.id, ray_run_name, settings.storage_path, session.embedded)


def resume_run(run_id: str, store: Resolved, ray_address: Resolved) -> RunOutcome:
    """Continue the MLflow run `run_id` whose driver died: same config, same Ray run folder.

    `store` and `ray_address`: where this driver finds the MLflow store and Ray, with their sources.
    The checkpoints are where the run's tag says (its `--storage-path`).
    """
    tracking_uri = store.value
    tracking.check_tracking_server(tracking_uri)
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        raise UsageError(f"--resume {run_id}: there is no MLflow store at {tracking_uri} (check $SUITE_HOME or --tracking-uri)")
    run = tracking.get_run(tracking_uri, run_id)
    if run.info.status == "FINISHED":
        raise UsageError(f"--resume {run_id}: the run already FINISHED; start a new one instead")
    tags = run.data.tags
    ray_run_name, storage_path = tags.get(tracking.TAG_RAY_RUN_NAME), tags.get(tracking.TAG_RAY_STORAGE)
    if tags.get(schema.TAG_KIND) != "run" or not ray_run_name or not storage_path:
        raise UsageError(f"--resume {run_id}: not a `suite run` run (it lacks the {tracking.TAG_RAY_RUN_NAME} tag)")
    ray_run_dir = storage.join(storage_path, ray_run_name)
    if not storage.exists(ray_run_dir):
        raise UsageError(
            f"--resume {run_id}: its Ray run folder {ray_run_dir} is gone (checkpoints are needed to resume; on a "
            "cluster, run from a machine that sees the same storage, or use --storage-path s3://... for new runs)"
        )
    settings = replace(
        _stored_settings(tracking_uri, run_id), tracking_uri=tracking_uri, tracking_uri_source=store.source,
        address=ray_address.value, address_source=ray_address.source, storage_path=storage_path,
    )
    announce(settings)
    session = start_ray(settings.address)
    with stoppable_run(session, tracking_uri) as stoppable:
        settings = with_cpus(settings, session, keep=True)
        stoppable.id = run_id
        tracking.reopen_run(tracking_uri, run_id)
        tracking.client(tracking_uri).set_tag(run_id, schema.TAG_RAY_ADDRESS, run_tags(settings, session)[schema.TAG_RAY_ADDRESS])
        log.info("resuming MLflow run %s from Ray run %s", run_id, ray_run_dir)
        return _fit(settings, run_id, ray_run_name, storage_path, session.embedded)


@dataclass
class _RunRef:
    id: str | None = None  # the MLflow run, once the driver has created or reopened it


@contextmanager
def stoppable_run(session: RaySession, tracking_uri: str) -> Iterator[_RunRef]:
    """The driver's body: Ctrl-C and SIGTERM end its run KILLED; Ray is closed on every way out.

    Signals become `RunInterrupted` only from here on, after `start_ray`: `ray.init` installs a
    SIGTERM handler of its own (`sys.exit`), which is restored afterwards. They stay caught during
    the clean-up, so that a repeated signal cannot cut it short. The run's status is set before
    Ray is shut down (a job stopped by Ray's Jobs API is SIGKILLed 3 s after its SIGTERM) and
    again after it, because a worker torn down mid-epoch ends the run FAILED on its way out.
    """
    run = _RunRef()
    with stop_signals_interrupt() as received:
        try:
            try:
                yield run
            except KeyboardInterrupt:
                if run.id is not None:
                    _mark_killed(tracking_uri, run.id)
                raise
            finally:
                session.close()
        except KeyboardInterrupt as err:
            stop = received.interrupt(err)
            stop.run_id, stop.tracking_uri = run.id, tracking_uri  # for the CLI's last line
            stop.run_status = _mark_killed(tracking_uri, run.id) if run.id is not None else None
            if stop is err:
                raise
            raise stop from None  # Ray's plain KeyboardInterrupt stands for our signal


def _mark_killed(tracking_uri: str, run_id: str) -> str:
    """KILLED, unless training got to the end (FINISHED) before the signal. Returns the status."""
    client = tracking.client(tracking_uri)
    status = client.get_run(run_id).info.status
    if status in ("KILLED", "FINISHED"):
        return status
    client.set_terminated(run_id, "KILLED")
    return "KILLED"


def _stored_settings(tracking_uri: str, run_id: str) -> RunSettings:
    from mlflow.artifacts import download_artifacts

    try:
        path = download_artifacts(run_id=run_id, artifact_path=CONFIG_ARTIFACT, tracking_uri=tracking_uri)
        return RunSettings.from_dict(yaml.safe_load(Path(path).read_text()))
    except Exception as err:  # missing or unreadable artifact: either way the run cannot be resumed
        raise UsageError(f"--resume {run_id}: cannot read its {CONFIG_ARTIFACT} artifact: {err}") from err


def with_cpus(settings: RunSettings, session: RaySession, keep: bool = False) -> RunSettings:
    cpus = settings.cpus_per_worker
    if cpus == 0 or (keep and session.embedded and cpus * settings.workers > _ray_cpus()):
        cpus = auto_cpus_per_worker(settings.workers, session.embedded)
    check_resources(settings.workers, cpus, settings.gpus_per_worker, session.embedded)
    return replace(settings, cpus_per_worker=cpus)


def _ray_cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 0.0)


def _fit(settings: RunSettings, run_id: str, ray_run_name: str, storage_path: str, embedded: bool) -> RunOutcome:
    trainer = build_trainer(
        settings, ray_run_name=ray_run_name, storage_path=storage_path, mlflow_run_id=run_id,
        progress_bars=sys.stdout.isatty(), embedded=embedded,
    )
    result, seconds = fit_tracked(trainer, settings.tracking_uri, run_id)
    return RunOutcome(
        run_id=run_id,
        tracking_uri=settings.tracking_uri,
        experiment=settings.experiment,
        metrics=dict(result.metrics or {}),
        seconds=seconds,
        ray_run_dir=storage.join(storage_path, ray_run_name),
    )


def fit_tracked(trainer, tracking_uri: str, run_id: str, what: str = "training"):
    """`trainer.fit()` whose outcome becomes the MLflow run's status: FINISHED, KILLED on a stop
    signal (the trainer aborted), FAILED with the worker's error. Returns (result, seconds)."""
    start = time.perf_counter()
    try:
        result = trainer.fit()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (stop_signals_interrupt)
        _mark_killed(tracking_uri, run_id)  # first: a stopped Ray job has 3 s before SIGKILL
        _abort(trainer)
        raise
    except Exception as err:
        root = _root_cause(err)
        tracking.mark_failed(tracking_uri, run_id, root, "".join(traceback.format_exception(err)))
        if isinstance(root, SuiteError):
            raise root from err
        raise SuiteError(
            f"{what} failed: {type(root).__name__}: {str(root).strip().splitlines()[0] if str(root).strip() else ''} "
            f"(MLflow run {run_id} is FAILED; its error.txt has the traceback)"
        ) from err
    tracking.mark_status(tracking_uri, run_id, "FINISHED")
    return result, time.perf_counter() - start


def _abort(trainer) -> None:
    """Stop the run's Ray Train controller and its workers, as Ray Train's own Ctrl-C handler does.

    Best effort, with a time limit: shutting down the driver's Ray tears them down in any case.
    """
    controller = getattr(trainer, "controller", None)
    if controller is None:
        return
    import ray

    started = time.perf_counter()
    try:
        ray.get(controller.abort.remote(), timeout=ABORT_TIMEOUT_S)
    except Exception as err:  # the controller exits while aborting (RayActorError), or is gone already
        log.debug("aborting the Ray Train controller: %s: %s", type(err).__name__, err)
    log.debug("Ray Train controller aborted in %.1f s", time.perf_counter() - started)


def _root_cause(err: BaseException) -> BaseException:
    """The worker's own exception inside Ray's WorkerGroupError, when there is exactly one kind."""
    failures = getattr(err, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        cause = getattr(first, "cause", None) or first.__cause__ or first
        return cause
    return err
