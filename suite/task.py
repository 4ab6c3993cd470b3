"""The Task contract: what a benchmark task declares and what it must provide.

A task is two things, in the style of lm-evaluation-harness:
- a declarative config (a YAML file beside the plugin, loaded into `TaskConfig`): name, modality,
  protocols, classes, input shape, stem kind and the paper's recipe (published results live in
  leaderboards/references.csv, read by `suite.leaderboard.references`);
- a small `Task` subclass that knows the dataset's on-disk format and builds train/eval datasets.

Datasets return `(x, label)` where `x` is a float tensor ready for the model: `[C, H, W]` for a
static sample (the model repeats it over T) or `[T, C, H, W]` for a sequence (event frames,
skeleton segments). Plugins register under the entry-point group `ENTRY_POINT_GROUP`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from suite.errors import DataNotFoundError, PluginError, UnknownNameError
from suite.run_settings import FIELDS, RECIPE_FIELDS

ENTRY_POINT_GROUP = "spikformer_suite.tasks"
DATA_ROOT_ENV = "SUITE_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("~/.cache/spikformer-suite/data")

Modality = Literal["image", "event", "skeleton"]
Split = Literal["train", "eval"]
MODALITIES = ("image", "event", "skeleton")
STEMS = ("cifar", "imagenet", "dvs")
SOURCED_TASK_FIELDS = ("num_classes", "input_shape", "model_overrides")  # besides recipe and extra keys


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """`--data-root`, else $SUITE_DATA_ROOT, else ~/.cache/spikformer-suite/data."""
    chosen = data_root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser()


# Recipe values that are not run settings (no flag, not among the run's params): the image tasks'
# augmentation reads them.
RECIPE_ONLY_FIELDS = (
    ("randaugment", "str | None", field(default=None)),  # timm RandAugment string, e.g. "rand-m9-n1-mstd0.4-inc1"
    ("random_erasing", "float", field(default=0.0)),
)

Recipe = dataclasses.make_dataclass(
    "Recipe",
    [(name, FIELDS[name].type, field(default=FIELDS[name].default)) for name in RECIPE_FIELDS] + list(RECIPE_ONLY_FIELDS),
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": """The paper's training recipe for a task; every `suite run` default comes from here.

    Its fields are the run settings declared with `recipe(...)` in `suite.run_settings.RunSettings`
    (same names, types and defaults; a field without a default must be set by every task), then
    RECIPE_ONLY_FIELDS. Epoch counts follow timm's train script, which the official code is:
    `epochs` is every epoch trained, the cosine spanning `epochs - cooldown_epochs` of them (timm's
    `--epochs`) and the last `cooldown_epochs` holding `min_lr`; the LR starts at `warmup_lr` and
    rises linearly over `warmup_epochs`. `mixup_off_epoch` > 0 turns mixup/cutmix off from that
    epoch (0: never). `batch_size` is the global batch (all workers together).
    """,
    },
)


@dataclass(frozen=True)
class TaskConfig:
    """The declarative part of a task, as written in its YAML file."""

    name: str
    modality: Modality
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one time step
    stem: str
    recipe: Recipe
    protocols: tuple[str, ...] = ("default",)  # the first one is the default protocol
    sequence_input: bool = False  # True: samples are [T, C, H, W]; False: [C, H, W]
    description: str = ""
    data_subdir: str = ""  # folder under the data root; defaults to the task name
    layout: str = ""  # the expected on-disk layout, shown when data is missing
    source: str = ""  # where to get the data
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"attn_scale": 0.25}
    # Where each recipe / extra value comes from: key -> "file:line official_key" in the official
    # code (ZK-Zhou/spikformer), or a list of them; `suite tasks --recipe NAME` prints them.
    sources: dict[str, Any] = field(default_factory=dict)
    # Official settings the suite does not apply: official key -> why it does not apply here.
    not_applicable: dict[str, str] = field(default_factory=dict)
    synthetic_size: dict[str, int] = field(default_factory=lambda: {"train": 512, "eval": 256})
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific knobs

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | Any) -> "TaskConfig":
        """`path`: a file, or a file shipped in a package, `importlib.resources.files("pkg") / "x.yaml"`
        (what a task should use: it works from a wheel, not only from a source checkout)."""
        path = path if hasattr(path, "read_text") else Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise PluginError(f"task config {path}: cannot be read: {err}") from err
        return cls.from_dict(raw, origin=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "<dict>") -> "TaskConfig":
        if not isinstance(raw, dict):
            raise PluginError(f"task config {origin}: expected a mapping, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if "references" in unknown:
            raise PluginError(
                f"task config {origin}: 'references' is no longer read from task YAML; published results "
                "live in one file, leaderboards/references.csv (or a file passed with --references)"
            )
        if unknown:
            raise PluginError(f"task config {origin}: unknown keys {unknown}; valid keys: {sorted(known)}")
        data = dict(raw)
        try:
            data["recipe"] = Recipe(**data["recipe"])
            data["input_shape"] = tuple(int(v) for v in data["input_shape"])
            data["protocols"] = tuple(data.get("protocols", ("default",)))
            config = cls(**data)
        except (KeyError, TypeError, ValueError) as err:
            raise PluginError(f"task config {origin}: {err}") from err
        config.validate(origin)
        return config

    def validate(self, origin: str = "<config>") -> None:
        problems = []
        if self.modality not in MODALITIES:
            problems.append(f"modality {self.modality!r} is not one of {MODALITIES}")
        if self.stem not in STEMS:
            problems.append(f"stem {self.stem!r} is not one of {STEMS}")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            problems.append(f"input_shape {self.input_shape} must be (C, H, W)")
        if self.num_classes < 2:
            problems.append(f"num_classes {self.num_classes} must be >= 2")
        if not self.protocols:
            problems.append("protocols must not be empty")
        sourced = {f.name for f in dataclasses.fields(Recipe)} | set(self.extra) | set(SOURCED_TASK_FIELDS)
        unsourced = sorted(set(self.sources) - sourced)
        if unsourced:
            problems.append(f"sources name {unsourced}, which are not recipe, extra or {SOURCED_TASK_FIELDS} keys")
        both = sorted(set(self.sources) & set(self.not_applicable))
        if both:
            problems.append(f"{both} are both sourced and not applicable")
        if problems:
            raise PluginError(f"task config {origin}: " + "; ".join(problems))


class Task:
    """Base class of every task plugin. Subclasses set `config` and implement `build_real_dataset`."""

    config: ClassVar[TaskConfig]
    preprocess_choices: ClassVar[tuple[str, ...]] = ()  # named data preprocessings; the recipe's is the default

    # -- declarative attributes, forwarded from the config -----------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def modality(self) -> str:
        return self.config.modality

    @property
    def protocols(self) -> tuple[str, ...]:
        return self.config.protocols

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def recipe(self) -> Recipe:
        return self.config.recipe

    def resolve_protocol(self, protocol: str | None) -> str:
        if protocol is None:
            return self.protocols[0]
        if protocol not in self.protocols:
            raise UnknownNameError(
                f"task {self.name!r} has no protocol {protocol!r}; valid protocols: {', '.join(self.protocols)}"
            )
        return protocol

    def with_preprocess(self, preprocess: str | None) -> "Task":
        """This task with the data preprocessing `preprocess` (None: the recipe's)."""
        if preprocess is None or preprocess == self.recipe.preprocess:
            return self
        self.check_preprocess(preprocess)
        return self._preprocessed(preprocess)

    def check_preprocess(self, preprocess: str) -> None:
        if preprocess not in self.preprocess_choices:
            valid = f"valid: {', '.join(self.preprocess_choices)}" if self.preprocess_choices else "it offers no choice"
            raise UnknownNameError(f"task {self.name!r} has no preprocessing {preprocess!r}; {valid}")

    def _preprocessed(self, preprocess: str) -> "Task":
        raise NotImplementedError(f"task {self.name!r} lists preprocessings but cannot switch them")

    def data_dir(self, data_root: str | os.PathLike | None = None) -> Path:
        return resolve_data_root(data_root) / (self.config.data_subdir or self.name)

    def model_kwargs(self, time_steps: int | None = None) -> dict[str, Any]:
        """Arguments for `suite.models.create_model` that fit this task's inputs."""
        c, h, w = self.config.input_shape
        return {
            "num_classes": self.num_classes,
            "stem": self.config.stem,
            "in_channels": c,
            "img_size": (h, w),
            "time_steps": time_steps or self.recipe.time_steps,
            **self.config.model_overrides,
        }

    def sample_shape(self, time_steps: int | None = None) -> tuple[int, ...]:
        """Shape of one dataset sample `x` (without the batch dimension)."""
        shape = tuple(self.config.input_shape)
        if self.config.sequence_input:
            return (time_steps or self.recipe.time_steps, *shape)
        return shape

    # -- data --------------------------------------------------------------------------------
    def is_available(self, data_root: str | os.PathLike | None = None) -> bool:
        """Whether the real data is found under the data root (cheap: no parsing)."""
        return self.data_dir(data_root).is_dir()

    def build_dataset(
        self,
        split: Split,
        *,
        data: str | os.PathLike | None = None,
        protocol: str | None = None,
        time_steps: int | None = None,
        download: bool = False,
        skip_corrupt: bool = False,
        augment: bool | None = None,
        seed: int = 0,
        synthetic_size: int | None = None,
        preprocess: str | None = None,
    ):
        """`data="synthetic"` gives the deterministic synthetic set (generated at the model's input
        shape, so `preprocess` is only checked); otherwise a data root (or None)."""
        if split not in ("train", "eval"):
            raise UnknownNameError(f"split {split!r} is not one of 'train', 'eval'")
        task = self.with_preprocess(preprocess)
        protocol = self.resolve_protocol(protocol)
        time_steps = time_steps or self.recipe.time_steps
        if str(data) == "synthetic":
            from suite.synthetic import SyntheticDataset

            size = synthetic_size or self.config.synthetic_size[split]
            return SyntheticDataset(
                modality=self.modality,
                sample_shape=self.sample_shape(time_steps),
                num_classes=self.num_classes,
                size=size,
                seed=seed + (0 if split == "train" else 1_000_003),
                class_seed=seed,
            )
        return task.build_real_dataset(
            split,
            data_root=resolve_data_root(data),
            protocol=protocol,
            time_steps=time_steps,
            download=download,
            skip_corrupt=skip_corrupt,
            augment=(split == "train") if augment is None else augment,
        )

    def build_real_dataset(
        self,
        split: Split,
        *,
        data_root: Path,
        protocol: str,
        time_steps: int,
        download: bool,
        skip_corrupt: bool,
        augment: bool,
    ):
        raise NotImplementedError(f"task {self.name!r} does not implement build_real_dataset")

    def missing_data_error(self, data_root: str | os.PathLike | None, detail: str = "") -> DataNotFoundError:
        """The error for absent data: names the task, the expected layout and where to get it."""
        where = self.data_dir(data_root)
        lines = [f"task {self.name!r}: data not found at {where}" + (f" ({detail})" if detail else "")]
        if self.config.layout:
            lines.append(f"expected layout under {where}:\n{self.config.layout.rstrip()}")
        if self.config.source:
            lines.append(f"get it from: {self.config.source}")
        lines.append(f"or point --data-root / ${DATA_ROOT_ENV} at the folder holding '{where.name}/'")
        return DataNotFoundError("\n".join(lines))
