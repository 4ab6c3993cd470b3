"""A sweep: Ray Tune over the run engine, one parent MLflow run, resumable.

`start_sweep` checks everything it can before Ray starts (space, settings, tracking store, data),
creates the parent run, sizes the concurrency to the cluster, and runs the Tuner. `resume_sweep`
restores an interrupted sweep from its Tune experiment folder (`Tuner.restore`) and its stored
`sweep.yaml`. Both end in `finish_sweep`, which logs the best trial on the parent run.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suite import schema, tracking
from suite.engine import storage
from suite.errors import MissingExtraError, SuiteError, UsageError
from suite.tune import runs
from suite.tune.space import ParamSpec, grid_size, parse_space, to_tune

log = logging.getLogger(__name__)

METRIC = schema.M_BEST_TOP1  # each trial's best top-1 so far: what ASHA compares and the best is picked by
MODE = "max"
TUNE_DIRNAME = "tune"
SCHEDULERS = ("asha", "fifo")
SEARCHES = ("random", "optuna")
# Where the sweep's services are, and where each came from: params of the parent run too.
CONNECTION_PARAMS = ("tracking_uri", "tracking_uri_source", "address", "address_source", "storage_path")


@dataclass
class SweepSpec:
    """Everything that defines a sweep; stored as `sweep.yaml` on the parent run for `--resume`."""

    task: str
    base_settings: dict[str, Any]  # RunSettings.to_dict() shared by all trials
    space: dict[str, str]  # name -> "dist:args"
    space_origin: str
    samples: int = 4
    scheduler: str = "asha"
    search: str = "random"
    max_concurrent: int | None = None  # None: as many trials as the cluster fits
    grace_period: int = 1
    reduction_factor: float = 2.0
    run_flags: dict[str, Any] = field(default_factory=dict)  # flags the user gave, for the best command

    def parsed_space(self) -> dict[str, ParamSpec]:
        return parse_space(self.space, "the sweep's stored space")

    @property
    def total_trials(self) -> int:
        return self.samples * grid_size(self.parsed_space())

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "SweepSpec":
        raw = yaml.safe_load(text)
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


@dataclass
class SweepOutcome:
    parent_run_id: str
    sweep_name: str
    tracking_uri: str
    interrupted: bool
    best_trial_id: str | None
    best_params: dict[str, Any]
    best_metrics: dict[str, Any]
    best_command: str | None
    trials: list[dict[str, Any]]  # one row per trial for the summary table
    stop_signal: int | None = None  # SIGTERM when that stopped the sweep (Ctrl-C: None; Tune handles it)


def check_spec(spec: SweepSpec) -> None:
    """Bad input fails here, before Ray starts: options, and every bound/choice as a real setting."""
    from suite.engine.driver import preflight
    from suite.models import model_config, options_for_task
    from suite.task_registry import get_task
    from suite.tune.trial import trial_settings

    if spec.scheduler not in SCHEDULERS:
        raise UsageError(f"--scheduler {spec.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
    if spec.search not in SEARCHES:
        raise UsageError(f"--search {spec.search!r}: use one of {', '.join(SEARCHES)}")
    if spec.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {spec.samples}")
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        raise UsageError(f"--max-concurrent must be at least 1, got {spec.max_concurrent}")
    space = spec.parsed_space()
    if spec.search == "optuna":
        grids = [name for name, p in space.items() if p.distribution == "grid"]
        if grids:
            raise UsageError(f"--search optuna samples every parameter; {', '.join(grids)} use grid: use choice instead")
        try:
            import optuna  # noqa: F401  (Ray's OptunaSearch imports it only when the sweep starts)
        except ImportError as err:
            raise MissingExtraError.for_feature("--search optuna", "optuna", err) from err
    task = get_task(spec.task)
    for name, param in space.items():
        for value in param.candidate_values():
            try:
                settings = trial_settings(spec.task, spec.base_settings, {name: value})
                if name == "model" or name == "time_steps":
                    model_config(settings.model, **options_for_task(settings.model, task, settings.time_steps))
            except SuiteError as err:
                raise UsageError(f"search space ({spec.space_origin}) {name}={param.text}: value {value!r}: {err}") from err
            except (ValueError, KeyError) as err:
                raise UsageError(f"search space ({spec.space_origin}) {name}={param.text}: value {value!r}: {err}") from err
    preflight(trial_settings(spec.task, spec.base_settings, {}))


def plan_concurrency(spec: SweepSpec, embedded: bool) -> int:
    """Trials at once: what the cluster's CPUs/GPUs fit (or --max-concurrent), at most the trial count."""
    import ray

    base = spec.base_settings
    workers, cpus, gpus = base["workers"], max(1, base["cpus_per_worker"]), base["gpus_per_worker"]
    available = ray.cluster_resources()
    fits = int(available.get("CPU", 0) // (workers * cpus))
    if gpus > 0:
        fits = min(fits, int(available.get("GPU", 0) // (workers * gpus)))
    need = f"{workers} worker(s) x ({cpus} CPU" + (f", {gpus:g} GPU" if gpus else "") + ")"
    if fits < 1:
        message = (
            f"one trial needs {need} but Ray has {available.get('CPU', 0):g} CPUs and {available.get('GPU', 0):g} GPUs"
        )
        if embedded:
            raise UsageError(f"{message}: lower --workers-per-trial/--cpus-per-worker/--gpus-per-worker")
        log.warning("%s: trials will wait for the cluster to scale up", message)
        fits = 1
    if spec.max_concurrent is not None:
        if spec.max_concurrent > fits:
            log.warning("--max-concurrent %d: the cluster fits %d trials of %s at once; the rest will queue",
                        spec.max_concurrent, fits, need)
        return spec.max_concurrent
    return max(1, min(fits, spec.total_trials))


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _tuner_parts(spec: SweepSpec, context, concurrency: int):
    """The Tune trainable, TuneConfig and RunConfig of a sweep (shared by start and restore)."""
    from ray import tune

    from suite.tune.callback import TrialRunsCallback
    from suite.tune.trial import run_trial

    epochs = spec.base_settings["epochs"]
    # The trial function only drives a TorchTrainer whose workers hold the CPUs and GPUs, so it
    # takes no CPU (Tune's default of 1 would starve the workers); Tune needs some resource, hence 1 MiB.
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), {"CPU": 0, "memory": 2**20})
    if spec.scheduler == "asha":
        scheduler = tune.schedulers.ASHAScheduler(
            time_attr="training_iteration", max_t=epochs, grace_period=min(spec.grace_period, epochs),
            reduction_factor=spec.reduction_factor,
        )
    else:
        scheduler = tune.schedulers.FIFOScheduler()
    seed = spec.base_settings.get("seed", 0)
    if spec.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        searcher, limit = OptunaSearch(seed=seed), concurrency
    else:
        # The random generator limits concurrency itself (Tune ignores max_concurrent_trials for it).
        searcher, limit = tune.search.BasicVariantGenerator(random_state=seed, max_concurrent=concurrency), None
    tune_config = tune.TuneConfig(
        metric=METRIC, mode=MODE, num_samples=spec.samples, scheduler=scheduler, search_alg=searcher,
        max_concurrent_trials=limit, trial_dirname_creator=trial_dirname,
    )
    # Tune's own reporter: a trial table (the sampled parameters, the first metrics of each report:
    # epoch, loss, top-1, best top-1) and the current best trial by METRIC.
    run_config = tune.RunConfig(
        name=context.sweep_name,
        storage_path=tune_storage(spec),
        callbacks=[TrialRunsCallback(context.tracking_uri, context.parent_run_id, epochs)],
        failure_config=tune.FailureConfig(max_failures=0),
        verbose=1,
    )
    return trainable, tune_config, run_config


def tune_storage(spec: SweepSpec) -> str:
    """Where Tune keeps the sweep's state: TUNE_DIRNAME under the sweep's --storage-path."""
    return storage.join(_storage_path(spec), TUNE_DIRNAME)


def _storage_path(spec: SweepSpec) -> str:
    return spec.base_settings.get("storage_path") or str(tracking.ray_storage_dir())  # "": a sweep of an older suite


def _context(spec: SweepSpec, parent_run_id: str, embedded: bool):
    from suite.tune.trial import SweepContext

    base = spec.base_settings
    return SweepContext(
        task=spec.task, base_settings=base, parent_run_id=parent_run_id, sweep_name=runs.sweep_name(parent_run_id),
        tracking_uri=base["tracking_uri"], experiment=base["experiment"],
        train_storage=_storage_path(spec), embedded=embedded,
    )


def start_sweep(spec: SweepSpec) -> SweepOutcome:
    from suite.engine.driver import announce, run_tags
    from suite.engine.ray_session import start_ray
    from suite.tune.trial import trial_settings

    check_spec(spec)
    base = spec.base_settings
    announce(trial_settings(spec.task, base, {}))
    session = start_ray(base["address"])
    try:
        concurrency = plan_concurrency(spec, session.embedded)
        tags = run_tags(trial_settings(spec.task, base, {}), session)
        name = f"sweep-{spec.task}-{base['model']}"
        tags[tracking.TAG_RAY_STORAGE] = _storage_path(spec)
        parent = runs.create_parent_run(base["tracking_uri"], base["experiment"], run_name=name, tags=tags)
        try:
            tuner = _new_tuner(spec, parent, concurrency, session.embedded)
        except BaseException as err:  # the parent run exists: it must not stay RUNNING
            tracking.mark_failed(base["tracking_uri"], parent, err)
            raise
        return _fit(tuner, spec, parent)
    finally:
        session.close()


def _new_tuner(spec: SweepSpec, parent: str, concurrency: int, embedded: bool):
    from ray import tune

    base = spec.base_settings
    tracking.log_params(
        base["tracking_uri"], parent,
        {"samples": spec.samples, "scheduler": spec.scheduler, "search": spec.search, "max_concurrent": concurrency,
         "epochs": base["epochs"], "workers_per_trial": base["workers"], "space_origin": spec.space_origin,
         **{key: base.get(key) for key in CONNECTION_PARAMS},
         **{f"space.{k}": v for k, v in spec.space.items()}},
    )
    tracking.client(base["tracking_uri"]).log_text(parent, spec.to_yaml(), runs.SWEEP_ARTIFACT)
    context = _context(spec, parent, embedded)
    log.info("sweep %s: %d trial(s), %d at once, %s scheduler, %s search; parent MLflow run %s in %s",
             context.sweep_name, spec.total_trials, concurrency, spec.scheduler, spec.search, parent,
             base["tracking_uri"])
    trainable, tune_config, run_config = _tuner_parts(spec, context, concurrency)
    return tune.Tuner(trainable, param_space=to_tune(spec.parsed_space()), tune_config=tune_config, run_config=run_config)


def resume_sweep(sweep: str, store, ray_address) -> SweepOutcome:
    """Continue an interrupted sweep: finished trials stay, unfinished ones resume from checkpoints.

    `store` and `ray_address` (`suite.tracking.Resolved`): where this driver finds MLflow and Ray.
    Tune's state is under the sweep's stored --storage-path.
    """
    from mlflow.artifacts import download_artifacts
    from ray import tune

    from suite.engine.driver import announce
    from suite.engine.ray_session import start_ray
    from suite.tune.trial import trial_settings

    tracking_uri = store.value
    parent = runs.parent_run_id_of(sweep)
    tracking.check_tracking_server(tracking_uri)
    run = tracking.get_run(tracking_uri, parent)
    if run.data.tags.get(schema.TAG_KIND) != "sweep":
        raise UsageError(f"--resume {sweep}: MLflow run {parent} in {tracking_uri} is not a `suite tune` sweep")
    if run.info.status == "FINISHED":
        raise UsageError(f"--resume {sweep}: the sweep already FINISHED; its best config is on run {parent}")
    try:
        spec = SweepSpec.from_yaml(Path(download_artifacts(run_id=parent, artifact_path=runs.SWEEP_ARTIFACT,
                                                           tracking_uri=tracking_uri)).read_text())
    except Exception as err:  # missing or unreadable: either way there is nothing to resume from
        raise UsageError(f"--resume {sweep}: cannot read its {runs.SWEEP_ARTIFACT} artifact: {err}") from err
    path = storage.join(tune_storage(spec), runs.sweep_name(parent))
    if not tune.Tuner.can_restore(path):
        raise UsageError(
            f"--resume {sweep}: its Tune experiment folder {path} is missing or incomplete (resume on a machine "
            f"that sees the same storage; a sweep with --storage-path s3://... is found from anywhere)"
        )
    spec.base_settings = {
        **spec.base_settings, "tracking_uri": tracking_uri, "tracking_uri_source": store.source,
        "address": ray_address.value, "address_source": ray_address.source,
    }
    announce(trial_settings(spec.task, spec.base_settings, {}))
    session = start_ray(ray_address.value)
    try:
        context = _context(spec, parent, session.embedded)
        trainable, _, _ = _tuner_parts(spec, context, concurrency=1)
        tracking.reopen_run(tracking_uri, parent)
        log.info("resuming sweep %s from %s", context.sweep_name, path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
        return _fit(tuner, spec, parent)
    finally:
        session.close()


def _fit(tuner, spec: SweepSpec, parent: str) -> SweepOutcome:
    """Run the Tuner; Ctrl-C and SIGTERM alike stop it gracefully (Tune saves the experiment,
    every trial run ends KILLED), which `--resume` continues."""
    from suite.engine.stop_signals import sigterm_like_sigint

    uri = spec.base_settings["tracking_uri"]
    with sigterm_like_sigint() as received:
        try:
            results = tuner.fit()
        except KeyboardInterrupt as err:  # a signal before Tune's loop took over, or a second one
            tracking.mark_status(uri, parent, "KILLED")
            stop = received.interrupt(err)
            stop.run_id, stop.run_status, stop.tracking_uri = parent, "KILLED", uri
            if stop is err:
                raise
            raise stop from None
        except Exception as err:
            tracking.mark_failed(uri, parent, err, "".join(traceback.format_exception(err)))
            raise SuiteError(
                f"the sweep failed: {type(err).__name__}: {err} (MLflow run {parent} is FAILED; its error.txt has "
                "the traceback)"
            ) from err
    outcome = finish_sweep(results, spec, parent)
    outcome.stop_signal = received.signum
    return outcome


def finish_sweep(results, spec: SweepSpec, parent: str) -> SweepOutcome:
    """The parent's final status and, for a completed sweep, the best trial logged onto it."""
    from suite.tune.report import trial_rows

    uri = spec.base_settings["tracking_uri"]
    trial_runs = runs.trial_runs(uri, parent)
    # Tune shows trials stopped by an interrupt as TERMINATED; the callback marked their runs KILLED.
    interrupted = len(results) > results.num_terminated + results.num_errors or any(
        run.info.status == "KILLED" for run in trial_runs.values())
    rows = trial_rows(results, trial_runs, list(spec.space))
    outcome = SweepOutcome(parent, runs.sweep_name(parent), uri, interrupted, None, {}, {}, None, rows)
    if interrupted:  # the best is logged once, when the sweep completes (MLflow params are write-once)
        tracking.mark_status(uri, parent, "KILLED")
        return outcome
    try:
        best = results.get_best_result(metric=METRIC, mode=MODE, filter_nan_and_inf=True)
    except RuntimeError:
        best = None
    if best is None or not best.metrics:
        tracking.mark_failed(uri, parent, f"all {len(results)} trials failed; see the nested runs' error tags")
        raise SuiteError(f"all {len(results)} trials failed (MLflow run {parent}); see each trial run's suite.error tag")
    _log_best(best, spec, parent, rows, outcome)
    tracking.mark_status(uri, parent, "FINISHED")
    return outcome


def _log_best(best, spec: SweepSpec, parent: str, rows: list[dict], outcome: SweepOutcome) -> None:
    from suite.tune.report import run_command
    from suite.tune.trial import trial_settings

    params = {name: best.config[name] for name in spec.space if name in best.config}
    trial_id = str(best.metrics.get("trial_id", ""))
    command = run_command(spec.task, spec.run_flags, params)
    settings_yaml = trial_settings(spec.task, spec.base_settings, params).to_yaml()
    metrics = {k: v for k, v in best.metrics.items() if k in _SCHEMA_METRICS}
    run_ids = {row["trial_id"]: row["run_id"] for row in rows}
    runs.log_best(spec.base_settings["tracking_uri"], parent, trial_id=trial_id, trial_run_id=run_ids.get(trial_id),
                  params=params, settings_yaml=settings_yaml, metrics=metrics, command=command)
    outcome.best_trial_id, outcome.best_params, outcome.best_metrics, outcome.best_command = (
        trial_id, params, metrics, command)


_SCHEMA_METRICS = {
    schema.M_LOSS, schema.M_TOP1, schema.M_TOP5, schema.M_BEST_TOP1, schema.M_EVAL_LOSS, schema.M_SAMPLES_PER_S,
    schema.M_SOPS, schema.M_ENERGY, schema.M_FIRING_RATE, schema.M_PARAMS, schema.M_EPOCH,
}
