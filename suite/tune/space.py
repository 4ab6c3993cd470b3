"""Search spaces of `suite tune`: `--param NAME=DIST:ARGS`, a task's `extra.search_space`, defaults.

One text format everywhere (flags, task YAML files, the sweep's stored spec):

    lr=loguniform:1e-4:1e-2      uniform:LOW:HIGH, loguniform:LOW:HIGH, quniform:LOW:HIGH:STEP
    time_steps=choice:2,4,6      choice:A,B,...  (sampled), grid:A,B,... (every value, each sample)
    warmup_epochs=randint:0:5    randint:LOW:HIGH, both ends included

`parse_space` turns the text into `ParamSpec`s (checked: known name, known distribution, values,
ordered bounds) and `to_tune` into Ray Tune domains. A task without `extra.search_space` gets its
modality's default below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from suite.errors import UsageError
from suite.run_settings import TUNABLE  # the settings a sweep may vary (`tunable=True`)

DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "randint", "choice", "grid")

# Around each modality's paper recipe: the learning rate and weight decay on a log scale, and
# the simulation length T that trades accuracy against SOPs.
DEFAULT_SPACES: dict[str, dict[str, str]] = {
    "image": {"lr": "loguniform:1e-4:2e-3", "weight_decay": "loguniform:1e-3:1e-1", "time_steps": "choice:2,4"},
    "event": {"lr": "loguniform:1e-4:5e-3", "weight_decay": "loguniform:1e-3:1e-1", "time_steps": "choice:10,16"},
    "skeleton": {"lr": "loguniform:1e-4:5e-3", "weight_decay": "loguniform:1e-3:1e-1", "time_steps": "choice:8,16"},
}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    distribution: str
    args: tuple[Any, ...]  # (low, high), (low, high, step) or the values

    @property
    def text(self) -> str:
        if self.distribution in ("choice", "grid"):
            return f"{self.distribution}:{','.join(str(v) for v in self.args)}"
        return f"{self.distribution}:{':'.join(str(v) for v in self.args)}"

    def candidate_values(self) -> list[Any]:
        """Values that must all be valid settings: the bounds of a range, every choice."""
        return list(self.args[:2]) if self.distribution not in ("choice", "grid") else list(self.args)


def _scalar(text: str) -> Any:
    """`4` -> 4, `1e-3` -> 0.001, anything else stays text (model names, amp modes)."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _number(text: str, where: str) -> float:
    value = _scalar(text)
    if isinstance(value, str) or value != value:
        raise UsageError(f"{where}: {text!r} is not a number")
    return value


def parse_param(item: str, origin: str = "--param") -> ParamSpec:
    """`NAME=DIST:ARGS` -> ParamSpec; every mistake is a UsageError naming the item."""
    name, sep, spec = item.partition("=")
    name = name.strip()
    where = f"{origin} {item!r}"
    if not sep or not name or not spec.strip():
        raise UsageError(f"{where}: expected NAME=DIST:ARGS, e.g. lr=loguniform:1e-4:1e-2 or time_steps=choice:2,4")
    return parse_spec(name, spec, where)


def parse_spec(name: str, spec: str, where: str) -> ParamSpec:
    if name not in TUNABLE:
        raise UsageError(f"{where}: {name!r} cannot be tuned; tunable settings: {', '.join(TUNABLE)}")
    distribution, _, rest = str(spec).strip().partition(":")
    distribution = distribution.strip().lower()
    if distribution not in DISTRIBUTIONS:
        raise UsageError(f"{where}: unknown distribution {distribution!r}; use one of {', '.join(DISTRIBUTIONS)}")
    if distribution in ("choice", "grid"):
        values = [_scalar(v) for v in rest.split(",") if v.strip()]
        if not values:
            raise UsageError(f"{where}: {distribution} has no values; list them, e.g. {name}={distribution}:A,B")
        if len(set(map(str, values))) != len(values):
            raise UsageError(f"{where}: {distribution} lists a value twice")
        return ParamSpec(name, distribution, tuple(values))

    parts = [p for p in rest.split(":")] if rest else []
    expected = 3 if distribution == "quniform" else 2
    usage = f"{distribution}:LOW:HIGH" + (":STEP" if distribution == "quniform" else "")
    if len(parts) != expected or not all(p.strip() for p in parts):
        raise UsageError(f"{where}: {distribution} takes {expected} numbers ({usage}), got {rest!r}")
    numbers = [_number(p, where) for p in parts]
    low, high = numbers[0], numbers[1]
    if distribution == "randint":
        if not all(isinstance(v, int) for v in numbers):
            raise UsageError(f"{where}: randint bounds must be integers, got {rest!r}")
        if low > high:
            raise UsageError(f"{where}: randint needs LOW <= HIGH, got {low} > {high}")
    elif not low < high:
        raise UsageError(f"{where}: {distribution} needs LOW < HIGH, got {low:g} and {high:g} (an empty range)")
    if distribution == "loguniform" and low <= 0:
        raise UsageError(f"{where}: loguniform needs LOW > 0, got {low:g}")
    if distribution == "quniform" and numbers[2] <= 0:
        raise UsageError(f"{where}: quniform needs STEP > 0, got {numbers[2]:g}")
    return ParamSpec(name, distribution, tuple(numbers))


def parse_space(raw: Mapping[str, Any] | list[str], origin: str) -> dict[str, ParamSpec]:
    """A whole space: `--param` items (a list) or a YAML mapping {name: "dist:args"}."""
    specs: dict[str, ParamSpec] = {}
    if isinstance(raw, Mapping):
        items = [(str(k), str(v), f"{origin}: {k}: {v}") for k, v in raw.items()]
        parsed = [parse_spec(name, spec, where) for name, spec, where in items]
    elif isinstance(raw, (list, tuple)):
        parsed = [parse_param(str(item), origin) for item in raw]
    else:
        raise UsageError(f"{origin}: expected a mapping of NAME: DIST:ARGS, got {type(raw).__name__}")
    for spec in parsed:
        if spec.name in specs:
            raise UsageError(f"{origin}: {spec.name!r} is given twice")
        specs[spec.name] = spec
    return specs


def resolve_space(task, params: list[str] | None) -> tuple[dict[str, ParamSpec], str]:
    """The sweep's space and where it came from: --param, else the task's YAML, else the modality default."""
    if params:
        return parse_space(params, "--param"), "--param"
    declared = task.config.extra.get("search_space")
    if declared is not None:
        origin = f"task {task.name!r} extra.search_space"
        space = parse_space(declared, origin)
        if not space:
            raise UsageError(f"{origin} is empty: declare at least one NAME: DIST:ARGS, or pass --param")
        return space, origin
    return parse_space(DEFAULT_SPACES[task.modality], f"default {task.modality} space"), f"the {task.modality} default"


def to_tune(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Ray Tune domains for the Tuner's param_space."""
    from ray import tune

    domains: dict[str, Any] = {}
    for name, spec in space.items():
        a = spec.args
        domains[name] = {
            "uniform": lambda: tune.uniform(a[0], a[1]),
            "loguniform": lambda: tune.loguniform(a[0], a[1]),
            "quniform": lambda: tune.quniform(a[0], a[1], a[2]),
            "randint": lambda: tune.randint(a[0], a[1] + 1),  # Tune's upper bound is exclusive
            "choice": lambda: tune.choice(list(a)),
            "grid": lambda: tune.grid_search(list(a)),
        }[spec.distribution]()
    return domains


def space_to_text(space: Mapping[str, ParamSpec]) -> dict[str, str]:
    return {name: spec.text for name, spec in space.items()}


def grid_size(space: Mapping[str, ParamSpec]) -> int:
    size = 1
    for spec in space.values():
        if spec.distribution == "grid":
            size *= len(spec.args)
    return size
