"""The resolved configuration of one `suite run`: task recipe < `--config FILE.yaml` < flags.

`resolve_settings` merges the three layers, converts and validates every value and names the
source of a bad one (the flag, the YAML file or the task recipe) in a one-line UsageError. The
result, `RunSettings`, is a flat dataclass: it is the MLflow params of the run, the YAML artifact
`config.yaml`, and the `train_loop_config` every Ray worker receives.

Batch size is global (the paper's number): each of the N workers gets batch_size // N samples.
A run that changes its recipe (a flag, a --config value, the CPU's amp fallback, a short run's
scaled schedule: see suite.engine.recipe_fit) says so once in its log, and `recipe_deviations`
records it among the MLflow params.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from suite.engine.recipe_fit import fit_to_run, recipe_deviations
from suite.errors import UsageError
from suite.schema import DATA_SYNTHETIC

log = logging.getLogger(__name__)

AMP_MODES = ("off", "bf16", "fp16")
SUPPORTED_OPTIMIZERS = ("adamw",)
SUPPORTED_SCHEDULES = ("cosine",)

# Fields that only say where/how the run executes, not what it computes: they are left out of
# the config hash so that the same experiment on 1 or 8 workers, or another seed, aggregates.
EXECUTION_FIELDS = (
    "seed", "workers", "gpus_per_worker", "cpus_per_worker", "loader_workers", "max_failures",
    "address", "tracking_uri", "experiment", "download", "data", "storage_path", "tracking_uri_source",
    "address_source",
)
DERIVED_FIELDS = ("recipe_deviations",)  # follow from the others; not part of the config hash
MIXUP_MODES = ("batch", "pair", "elem")
# Where each connection setting came from (flag, config file, environment variable, default): set
# by `resolve_settings`, recorded in the run's params.
SOURCE_FIELDS = {"tracking_uri": "tracking_uri_source", "address": "address_source"}


@dataclass
class RunSettings:
    task: str
    protocol: str
    model: str
    data: str  # "synthetic" or the absolute data root
    time_steps: int
    epochs: int
    batch_size: int  # global, split across workers
    lr: float
    weight_decay: float
    warmup_epochs: int
    cooldown_epochs: int
    min_lr: float
    warmup_lr: float
    sched_on_updates: bool
    warmup_prefix: bool
    label_smoothing: float
    mixup: float
    cutmix: float
    mixup_prob: float
    mixup_switch_prob: float
    mixup_mode: str
    mixup_off_epoch: int
    amp: str
    optimizer: str
    schedule: str
    preprocess: str | None = None  # the task's named data preprocessing (NTU: suite | ctrgcn); None: no choice
    seed: int = 0
    synthetic_size: int | None = None  # samples per split; None: the task's default
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: int = 0  # 0: share the machine's CPUs evenly among the workers
    loader_workers: int = 0  # DataLoader processes per worker
    skip_corrupt: bool = False
    download: bool = False
    max_failures: int = 1
    experiment: str = "spikformer-suite"
    tracking_uri: str = ""
    address: str | None = None  # None: an embedded local Ray
    recipe_deviations: str = ""  # what this run changed of its task's recipe ("" = nothing)
    storage_path: str = ""  # Ray Train checkpoints and Tune state: folder or s3:// gs:// URI (suite.engine.storage)
    tracking_uri_source: str = ""  # --tracking-uri, $MLFLOW_TRACKING_URI or default
    address_source: str = ""  # --address, $RAY_ADDRESS or default

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def per_worker_batch_size(self) -> int:
        return self.batch_size // self.workers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "RunSettings":
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hashed_fields(self) -> dict[str, Any]:
        """The fields that define the experiment (see EXECUTION_FIELDS)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS + DERIVED_FIELDS}


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunSettings))
RECIPE_FIELDS = (
    "model", "time_steps", "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "cooldown_epochs",
    "min_lr", "warmup_lr", "sched_on_updates", "warmup_prefix", "label_smoothing", "mixup", "cutmix", "mixup_prob",
    "mixup_switch_prob", "mixup_mode", "mixup_off_epoch", "amp", "optimizer", "schedule", "preprocess",
)


@dataclass
class _Value:
    value: Any
    source: str  # "flag", "file:<path>", "recipe:<task>", "default"


@dataclass
class _Layers:
    values: dict[str, _Value] = field(default_factory=dict)

    def put(self, mapping: Mapping[str, Any], source: str) -> None:
        for key, value in mapping.items():
            if value is not None:
                self.values[key] = _Value(value, source)

    def where(self, key: str) -> str:
        source = self.values[key].source
        if source == "flag":
            return "--" + key.replace("_", "-")
        if source.startswith("file:"):
            return f"{key} in {source[5:]}"
        if source.startswith("recipe:"):
            return f"{key} of task {source[7:]!r}'s recipe"
        return key


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A `--config` YAML file: a flat mapping of RunSettings field names (as in config.yaml)."""
    file = Path(path).expanduser()
    try:
        raw = yaml.safe_load(file.read_text())
    except OSError as err:
        raise UsageError(f"--config {file}: cannot be read: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise UsageError(f"--config {file}: invalid YAML: {str(err).splitlines()[0]}") from err
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"--config {file}: expected a mapping of settings, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(FIELD_NAMES))
    if unknown:
        raise UsageError(f"--config {file}: unknown keys {unknown}; valid keys: {', '.join(FIELD_NAMES)}")
    return raw


def resolve_settings(
    task_name: str,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike | None = None,
) -> RunSettings:
    """Recipe of `task_name`, then the YAML file, then `overrides` (flags; None means unset)."""
    from suite.task_registry import get_task

    task = get_task(task_name)
    layers = _Layers()
    layers.put({"task": task.name}, "default")
    layers.put({name: getattr(task.recipe, name) for name in RECIPE_FIELDS}, f"recipe:{task.name}")
    layers.put({f.name: f.default for f in dataclasses.fields(RunSettings) if f.default is not dataclasses.MISSING}, "default")
    if config_file:
        file_values = load_config_file(config_file)
        if file_values.get("task", task.name) != task.name:
            raise UsageError(f"--config {config_file}: task {file_values['task']!r} contradicts --task {task.name}")
        layers.put(file_values, f"file:{Path(config_file).expanduser()}")
    layers.put(dict(overrides or {}), "flag")

    values = {key: item.value for key, item in layers.values.items()}
    checked: dict[str, Any] = {"task": task.name}
    for name in FIELD_NAMES:
        if name == "task":
            continue
        checked[name] = _check(name, values.get(name), layers)
    checked["protocol"] = task.resolve_protocol(checked["protocol"])
    if checked["preprocess"] is not None:
        try:
            task.check_preprocess(checked["preprocess"])
        except UsageError as err:
            raise UsageError(f"{layers.where('preprocess')}: {err}") from None
    _resolve_connections(checked, layers)
    settings = RunSettings(**checked)
    _check_combinations(settings, layers)
    from_recipe = {name for name, item in layers.values.items() if item.source.startswith("recipe:")}
    fit_to_run(settings, task.recipe, from_recipe)
    _check_schedule(settings, layers)
    settings.recipe_deviations = recipe_deviations(settings, task.recipe)
    return settings


def _check(name: str, value: Any, layers: _Layers) -> Any:
    where = layers.where(name) if name in layers.values else name
    if name in ("epochs", "batch_size", "time_steps", "workers"):
        return _integer(value, where, minimum=1)
    if name in ("warmup_epochs", "cooldown_epochs", "mixup_off_epoch", "seed", "loader_workers", "cpus_per_worker"):
        return _integer(value, where, minimum=0)
    if name == "max_failures":
        return _integer(value, where, minimum=-1)
    if name == "synthetic_size":
        return None if value is None else _integer(value, where, minimum=1)
    if name == "lr":
        return _number(value, where, positive=True)
    if name in ("weight_decay", "min_lr", "warmup_lr", "mixup", "cutmix", "gpus_per_worker"):
        return _number(value, where)
    if name in ("label_smoothing", "mixup_prob", "mixup_switch_prob"):
        number = _number(value, where)
        if number > 1:
            raise UsageError(f"{where} must be between 0 and 1, got {number}")
        return number
    if name == "recipe_deviations":
        return ""  # derived at the end of resolve_settings
    if name == "mixup_mode":
        if value not in MIXUP_MODES:
            raise UsageError(f"{where} must be one of {', '.join(MIXUP_MODES)}, got {value!r}")
        return value
    if name in ("skip_corrupt", "download", "sched_on_updates", "warmup_prefix"):
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value
    if name == "amp":
        value = "off" if value in (False, None) else str(value).lower()
        if value not in AMP_MODES:
            raise UsageError(f"{where} must be one of {', '.join(AMP_MODES)}, got {value!r}")
        return value
    if name == "optimizer":
        if str(value).lower() not in SUPPORTED_OPTIMIZERS:
            raise UsageError(f"{where} is {value!r}; suite run supports {', '.join(SUPPORTED_OPTIMIZERS)}")
        return str(value).lower()
    if name == "schedule":
        if str(value).lower() not in SUPPORTED_SCHEDULES:
            raise UsageError(f"{where} is {value!r}; suite run supports {', '.join(SUPPORTED_SCHEDULES)}")
        return str(value).lower()
    if name == "data":
        return _data(value)
    if name in ("model", "experiment"):
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{where} must be a non-empty name, got {value!r}")
        return value.strip()
    if name in ("protocol", "address", "preprocess"):
        return None if value in (None, "") else str(value)
    if name in ("tracking_uri", "storage_path", *SOURCE_FIELDS.values()):
        return "" if value is None else str(value)
    raise AssertionError(f"no check for setting {name!r}")  # a new field must get a check


def _resolve_connections(checked: dict[str, Any], layers: _Layers) -> None:
    """Tracking store, Ray and checkpoint storage: a flag or file, else the environment, else defaults."""
    from suite.engine.ray_session import resolve_ray_address
    from suite.engine.storage import resolve_storage_path
    from suite.tracking import resolve_tracking

    def where(key: str) -> str:
        return layers.where(key) if key in layers.values else key

    resolved = {
        "tracking_uri": resolve_tracking(checked["tracking_uri"] or None, where("tracking_uri")),
        "address": resolve_ray_address(checked["address"], where("address")),
    }
    for key, found in resolved.items():
        checked[key] = found.value
        source_key = SOURCE_FIELDS[key]
        given, value = layers.values.get(source_key), layers.values.get(key)
        # A source given with its value (a trial's settings, a run's config.yaml) stays as it was.
        keep = given is not None and given.value and value is not None and given.source == value.source
        checked[source_key] = checked[source_key] if keep else found.source
    checked["storage_path"] = resolve_storage_path(checked["storage_path"], where("storage_path"))


def _integer(value: Any, where: str, minimum: int) -> int:
    kind = {1: "a positive integer", 0: "a non-negative integer", -1: "an integer >= -1"}[minimum]
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where} must be {kind}, got {value!r}") from None
    if number < minimum:
        raise UsageError(f"{where} must be {kind}, got {number}")
    return number


def _number(value: Any, where: str, positive: bool = False) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise UsageError(f"{where} must be a finite number, got {value!r}")
    if positive and number <= 0:
        raise UsageError(f"{where} must be a positive number, got {number:g}")
    if number < 0:
        raise UsageError(f"{where} must not be negative, got {number:g}")
    return number


def _data(value: Any) -> str:
    """"synthetic", or the data root as an absolute path (Ray workers run in another folder)."""
    from suite.task import resolve_data_root

    if str(value) == DATA_SYNTHETIC:
        return DATA_SYNTHETIC
    return str(resolve_data_root(value).resolve())


def _check_combinations(settings: RunSettings, layers: _Layers) -> None:
    if settings.batch_size < settings.workers:
        raise UsageError(
            f"{layers.where('batch_size')} ({settings.batch_size}) is the global batch size and must be at "
            f"least --workers ({settings.workers})"
        )
    if settings.synthetic_size is not None and settings.data != DATA_SYNTHETIC:
        raise UsageError("--synthetic-size applies only to --data synthetic")
    if settings.amp == "fp16" and not settings.use_gpu:
        if layers.values["amp"].source.startswith("recipe:"):
            # The paper trained with CUDA fp16; on CPU the recipe's default falls back, a request does not.
            log.info("the %s recipe's amp fp16 needs CUDA; running with amp off on CPU", settings.task)
            settings.amp = "off"
        else:
            raise UsageError(
                f"{layers.where('amp')} fp16 needs CUDA workers (--gpus-per-worker 1); on CPU use --amp bf16 or off"
            )


def _check_schedule(settings: RunSettings, layers: _Layers) -> None:
    """After fit_to_run: the cosine must get at least one epoch, and timm's Mixup needs even batches."""
    if settings.cooldown_epochs >= settings.epochs:
        raise UsageError(
            f"{layers.where('cooldown_epochs')} ({settings.cooldown_epochs}) leaves no cosine epoch in "
            f"{settings.epochs} epochs; lower it or raise --epochs"
        )
    mixing = (settings.mixup > 0 or settings.cutmix > 0) and settings.mixup_prob > 0
    if mixing and settings.per_worker_batch_size % 2:
        raise UsageError(
            f"mixup/cutmix pair each sample with the batch flipped, so each worker's batch must be even: "
            f"{layers.where('batch_size')} {settings.batch_size} over --workers {settings.workers} gives "
            f"{settings.per_worker_batch_size}; choose an even per-worker batch, or --mixup 0 --cutmix 0"
        )
