"""Every setting of a run, declared once: `RunSettings`, one field per setting.

A field says its type, its limits (a kind from `suite.setting_kinds`), where its default comes
from and its help:

    recipe(...)       the task's recipe (its YAML file); `default` is what a recipe that does not
                      set it gets. `suite.task.Recipe` is made of these fields.
    builtin(...)      a built-in default, the same for every task.
    environment(...)  a flag, else an environment variable, else a default (`default_text` says which).
    derived(...)      computed while resolving; never given.

Everything else is generated from the fields: the flags of `suite run`, `suite tune` and `suite
eval` (suite.commands.setting_flags) with their help, the check of each value and its error
naming the flag, YAML file or recipe (suite.engine.config), the recipe (suite.task.Recipe), the
settings a sweep may vary (`tunable`) and those left out of the config hash (`execution`).
Adding a setting is adding a field here, and reading it where the run uses it.

The resolved `RunSettings` is the MLflow params of the run, its `config.yaml` artifact and the
`train_loop_config` every Ray worker receives. Batch size is global (the paper's number): each
of the N workers gets batch_size // N samples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, Mapping

import yaml

from suite.setting_kinds import Choice, DataRoot, Derived, Integer, Name, Number, Supported, Switch, Text

AMP_MODES = ("off", "bf16", "fp16")
MIXUP_MODES = ("batch", "pair", "elem")
TRAINING = ("run", "tune")  # the commands that take a setting's flag
EVERYWHERE = ("run", "tune", "eval")
SETTING = "suite.setting"  # the key of a field's metadata holding its `Setting`
SOURCES = ("recipe", "default", "environment", "derived", "command")


@dataclass(frozen=True)
class Setting:
    """What a RunSettings field declares besides its name, type and default."""

    kind: Callable[[Any, str], Any]  # converts a value, or raises a UsageError naming `where`
    help: str
    source: str  # one of SOURCES: where the default comes from
    metavar: str | None = None
    default_text: str | None = None  # the default in words, when the value alone does not say it
    commands: tuple[str, ...] = TRAINING
    # `suite tune --param NAME=...` may vary it; never epochs (the scheduler's budget) nor where a trial
    # runs (workers, data, tracking): those are the same for every trial.
    tunable: bool = False
    execution: bool = False  # where/how the run executes, not what it computes: not in the config hash

    @property
    def has_flag(self) -> bool:
        return self.source in ("recipe", "default", "environment")


def _declare(setting: Setting, default: Any = MISSING) -> Any:
    return field(default=default, metadata={SETTING: setting})


def recipe(kind, metavar: str | None, help: str, *, default: Any = MISSING, tunable: bool = False,
           commands: tuple[str, ...] = TRAINING) -> Any:
    return _declare(Setting(kind, help, "recipe", metavar, None, commands, tunable), default)


def builtin(kind, metavar: str | None, help: str, *, default: Any = MISSING, default_text: str | None = None,
            commands: tuple[str, ...] = TRAINING, tunable: bool = False, execution: bool = False) -> Any:
    return _declare(Setting(kind, help, "default", metavar, default_text, commands, tunable, execution), default)


def environment(kind, metavar: str, help: str, *, default_text: str, default: Any = MISSING) -> Any:
    return _declare(Setting(kind, help, "environment", metavar, default_text, EVERYWHERE, execution=True), default)


def derived(kind, help: str, *, default: Any = "", execution: bool = False, source: str = "derived") -> Any:
    return _declare(Setting(kind, help, source, execution=execution), default)


@dataclass
class RunSettings:
    task: str = derived(Name(), "the task (--task)", default=MISSING, source="command")
    protocol: str = builtin(Text(optional=True), "PROTOCOL", "evaluation protocol",
                            default_text="the task's first", commands=EVERYWHERE)
    model: str = recipe(Name(), "NAME", "model name, e.g. spikformer-4-384", tunable=True, commands=EVERYWHERE)
    data: str = environment(
        DataRoot(), "synthetic|PATH", "'synthetic' for generated data of the task's shapes, or the data root "
        "holding the task's folder", default_text="--data-root, else $SUITE_DATA_ROOT, else ~/.cache/spikformer-suite/data",
    )
    time_steps: int = recipe(Integer(1), "T", "simulation time steps T", tunable=True, commands=EVERYWHERE)
    epochs: int = recipe(Integer(1), "N", "training epochs, cool-down included (a short run scales the recipe's "
                         "schedule: README)")
    batch_size: int = recipe(Integer(1), "N", "global batch size, split evenly across workers", tunable=True,
                             commands=EVERYWHERE)
    lr: float = recipe(Number(positive=True), "LR", "peak learning rate", tunable=True)
    weight_decay: float = recipe(Number(), "WD", "weight decay (not applied to biases/norms)", tunable=True)
    warmup_epochs: int = recipe(Integer(0), "N", "linear warm-up epochs of timm's cosine schedule", default=0,
                                tunable=True)
    cooldown_epochs: int = recipe(Integer(0), "N", "last epochs held at the minimum learning rate", default=0)
    min_lr: float = recipe(Number(), "LR", "the cosine's last learning rate, held over the cool-down", default=1e-5,
                           tunable=True)
    warmup_lr: float = recipe(Number(), "LR", "the learning rate the warm-up starts from", default=1e-6, tunable=True)
    sched_on_updates: bool = recipe(Switch(), None, "step the learning rate every update, not every epoch "
                                    "(timm's --sched-on-updates)", default=False)
    warmup_prefix: bool = recipe(Switch(), None, "start the cosine after the warm-up, at lr (timm's --warmup-prefix)",
                                 default=False)
    label_smoothing: float = recipe(Number(at_most=1), "EPS", "label smoothing of the cross-entropy", default=0.1,
                                    tunable=True)
    mixup: float = recipe(Number(), "ALPHA", "mixup alpha: Beta(alpha, alpha) (0 disables)", default=0.0, tunable=True)
    cutmix: float = recipe(Number(), "ALPHA", "cutmix alpha: Beta(alpha, alpha) (0 disables)", default=0.0,
                           tunable=True)
    mixup_prob: float = recipe(Number(at_most=1), "P", "chance that a batch is mixed", default=1.0, tunable=True)
    mixup_switch_prob: float = recipe(Number(at_most=1), "P", "chance of cutmix instead of mixup when both are on",
                                      default=0.5, tunable=True)
    mixup_mode: str = recipe(Choice(MIXUP_MODES), "|".join(MIXUP_MODES), "timm's Mixup mode: one lambda per batch, "
                             "per pair or per sample", default="batch")
    mixup_off_epoch: int = recipe(Integer(0), "N", "turn mixup/cutmix off from this epoch (0: never)", default=0)
    amp: str = recipe(Choice(AMP_MODES, lower=True, unset="off"), "|".join(AMP_MODES),
                      "mixed precision: bf16 (CPU or CUDA), fp16 (CUDA only)", default="off", tunable=True,
                      commands=EVERYWHERE)
    optimizer: str = recipe(Supported(("adamw",)), "NAME", "optimizer", default="adamw")
    schedule: str = recipe(Supported(("cosine",)), "NAME", "learning-rate schedule", default="cosine")
    preprocess: str | None = recipe(Text(optional=True), "NAME", "the task's data preprocessing, e.g. ntu60: suite "
                                    "or ctrgcn", default=None)
    seed: int = builtin(Integer(0), "N", "random seed", default=0, commands=EVERYWHERE, tunable=True, execution=True)
    synthetic_size: int | None = builtin(Integer(1, optional=True), "N", "samples per split with --data synthetic",
                                         default=None, default_text="the task's", commands=EVERYWHERE)
    workers: int = builtin(Integer(1), "N", "Ray Train workers", default=1, commands=("run", "eval"), execution=True)
    gpus_per_worker: float = builtin(Number(), "G", "GPUs per worker (0: CPU training with gloo; >0: CUDA with nccl)",
                                     default=0.0, commands=EVERYWHERE, execution=True)
    cpus_per_worker: int = builtin(Integer(0), "N", "CPUs (and torch threads) per worker; 0: share this machine's CPUs",
                                   default=0, commands=EVERYWHERE, execution=True)
    loader_workers: int = builtin(Integer(0), "N", "DataLoader processes per worker", default=0, commands=EVERYWHERE,
                                  execution=True)
    skip_corrupt: bool = builtin(Switch(), None, "skip unreadable samples instead of failing", default=False,
                                 commands=EVERYWHERE)
    download: bool = builtin(Switch(), None, "download the dataset if the task supports it", default=False,
                             commands=EVERYWHERE, execution=True)
    max_failures: int = builtin(Integer(-1), "K", "restarts of a failed worker group from its last checkpoint "
                                "(-1: unlimited)", default=1, execution=True)
    experiment: str = builtin(Name(), "NAME", "MLflow experiment", default="spikformer-suite", commands=EVERYWHERE,
                              execution=True)
    tracking_uri: str = environment(Text(), "URI", "MLflow store: sqlite:///PATH.db or http(s)://HOST:PORT",
                                    default_text="$MLFLOW_TRACKING_URI, else sqlite in $SUITE_HOME", default="")
    address: str | None = environment(Text(optional=True), "ADDRESS", "join this Ray cluster",
                                      default_text="$RAY_ADDRESS, else an embedded local Ray on 127.0.0.1", default=None)
    recipe_deviations: str = derived(Derived(), "what this run changed of its task's recipe (\"\": nothing)")
    storage_path: str = environment(Text(), "PATH|URI", "Ray Train checkpoints (and Tune state): a shared folder, "
                                    "s3://BUCKET/PATH or gs://BUCKET/PATH",
                                    default_text="$SUITE_HOME/ray_results", default="")
    tracking_uri_source: str = derived(Text(), "--tracking-uri, $MLFLOW_TRACKING_URI or default", execution=True)
    address_source: str = derived(Text(), "--address, $RAY_ADDRESS or default", execution=True)

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
        """The fields that define the experiment (not EXECUTION_FIELDS, not DERIVED_FIELDS)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS + DERIVED_FIELDS}


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunSettings)}
_UNDECLARED = [name for name, f in FIELDS.items() if SETTING not in f.metadata]
if _UNDECLARED:
    raise TypeError(f"RunSettings fields {_UNDECLARED} are plain fields; declare them with recipe(), builtin(), "
                    "environment() or derived() so that they get a check, a flag and help")
SETTINGS: dict[str, Setting] = {name: f.metadata[SETTING] for name, f in FIELDS.items()}
FIELD_NAMES = tuple(FIELDS)
RECIPE_FIELDS = tuple(name for name, s in SETTINGS.items() if s.source == "recipe")
EXECUTION_FIELDS = tuple(name for name, s in SETTINGS.items() if s.execution)
DERIVED_FIELDS = tuple(name for name, s in SETTINGS.items() if s.source == "derived")
TUNABLE = tuple(name for name, s in SETTINGS.items() if s.tunable)


def flag(name: str) -> str:
    """The flag of setting `name`: `--batch-size` for batch_size."""
    return "--" + name.replace("_", "-")


def has_default(name: str) -> bool:
    return FIELDS[name].default is not MISSING


def help_text(name: str) -> str:
    """The flag's help: the field's help and, unless the recipe gives it, its default."""
    setting, default = SETTINGS[name], FIELDS[name].default
    if setting.source == "recipe" or (setting.default_text is None and (default is MISSING or default is False)):
        return setting.help
    shown = setting.default_text or (f"{default:g}" if isinstance(default, float) else str(default))
    return f"{setting.help} (default: {shown})"
