"""The resolved configuration of one `suite run`: task recipe < `--config FILE.yaml` < flags.

`resolve_settings` merges the three layers, converts and validates every value and names the
source of a bad one (the flag, the YAML file or the task recipe) in a one-line UsageError. Each
value is checked by the kind its field declares in `suite.run_settings.RunSettings`, the result;
this module adds only the checks that involve several settings or the machine.

A run that changes its recipe (a flag, a --config value, the CPU's amp fallback, a short run's
scaled schedule: see suite.engine.recipe_fit) says so once in its log, and `recipe_deviations`
records it among the MLflow params.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from suite.engine.recipe_fit import fit_to_run, recipe_deviations
from suite.errors import UsageError
from suite.run_settings import FIELD_NAMES, FIELDS, RECIPE_FIELDS, SETTINGS, RunSettings, flag, has_default
from suite.schema import DATA_SYNTHETIC

log = logging.getLogger(__name__)

# Where each connection setting came from (flag, config file, environment variable, default): set
# by `resolve_settings`, recorded in the run's params.
SOURCE_FIELDS = {"tracking_uri": "tracking_uri_source", "address": "address_source"}


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
            return flag(key)
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
    builtin = [name for name, s in SETTINGS.items() if s.source != "recipe" and has_default(name)]
    layers.put({name: FIELDS[name].default for name in builtin}, "default")
    layers.put({name: getattr(task.recipe, name) for name in RECIPE_FIELDS}, f"recipe:{task.name}")
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
    """The value converted and checked by its field's kind (suite.run_settings)."""
    return SETTINGS[name].kind(value, layers.where(name) if name in layers.values else name)


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
