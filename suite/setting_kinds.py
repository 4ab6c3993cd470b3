"""What a run setting's value may be: each kind converts a value (flag text, YAML, a recipe) and
refuses a bad one with a one-line UsageError that starts with where it came from.

`where` is the flag (`--epochs`), the YAML file (`epochs in run.yaml`) or the task recipe
(`epochs of task 'cifar10''s recipe`), as `suite.engine.config` names the value's source. The
kinds are attached to the fields of `suite.run_settings.RunSettings`, which is where a setting's
limits are declared; nothing else checks a single value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from suite.errors import UsageError
from suite.schema import DATA_SYNTHETIC


@dataclass(frozen=True)
class Integer:
    minimum: int  # 1, 0 or -1: the words of the error name it
    optional: bool = False  # None stays None (the default applies)

    def __call__(self, value: Any, where: str) -> int | None:
        if self.optional and value is None:
            return None
        kind = {1: "a positive integer", 0: "a non-negative integer", -1: "an integer >= -1"}[self.minimum]
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where} must be {kind}, got {value!r}") from None
        if number < self.minimum:
            raise UsageError(f"{where} must be {kind}, got {number}")
        return number


@dataclass(frozen=True)
class Number:
    """A finite float, never negative; `positive` also refuses 0, `at_most` caps it (1: a probability)."""

    positive: bool = False
    at_most: float | None = None

    def __call__(self, value: Any, where: str) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where} must be a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise UsageError(f"{where} must be a finite number, got {value!r}")
        if self.positive and number <= 0:
            raise UsageError(f"{where} must be a positive number, got {number:g}")
        if number < 0:
            raise UsageError(f"{where} must not be negative, got {number:g}")
        if self.at_most is not None and number > self.at_most:
            raise UsageError(f"{where} must be between 0 and {self.at_most:g}, got {number}")
        return number


@dataclass(frozen=True)
class Choice:
    """One of `values`; `unset` is what False/None (YAML `amp: false`) mean, `lower` folds case."""

    values: tuple[str, ...]
    lower: bool = False
    unset: str | None = None

    def __call__(self, value: Any, where: str) -> str:
        if self.unset is not None and value in (False, None):
            value = self.unset
        if self.lower:
            value = str(value).lower()
        if value not in self.values:
            raise UsageError(f"{where} must be one of {', '.join(self.values)}, got {value!r}")
        return value


@dataclass(frozen=True)
class Supported:
    """A name the suite may one day take more of (an optimizer, a schedule); today only `values`."""

    values: tuple[str, ...]

    def __call__(self, value: Any, where: str) -> str:
        if str(value).lower() not in self.values:
            raise UsageError(f"{where} is {value!r}; suite run supports {', '.join(self.values)}")
        return str(value).lower()


@dataclass(frozen=True)
class Switch:
    def __call__(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value


@dataclass(frozen=True)
class Name:
    def __call__(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{where} must be a non-empty name, got {value!r}")
        return value.strip()


@dataclass(frozen=True)
class Text:
    """Free text checked later by whoever reads it (a URI, a protocol); `optional`: "" means None."""

    optional: bool = False

    def __call__(self, value: Any, where: str) -> str | None:
        if self.optional:
            return None if value in (None, "") else str(value)
        return "" if value is None else str(value)


@dataclass(frozen=True)
class DataRoot:
    """"synthetic", or the data root as an absolute path (Ray workers run in another folder)."""

    def __call__(self, value: Any, where: str) -> str:
        from suite.task import resolve_data_root

        if str(value) == DATA_SYNTHETIC:
            return DATA_SYNTHETIC
        return str(resolve_data_root(value).resolve())


@dataclass(frozen=True)
class Derived:
    """Computed by `resolve_settings` from the others; any given value is dropped."""

    def __call__(self, value: Any, where: str) -> str:
        return ""
