"""Task discovery through the `spikformer_suite.tasks` entry-point group.

Built-in tasks (the `tasks` package) register in pyproject.toml exactly like a third-party
package would. A plugin that fails to import or breaks the Task contract raises `PluginError`
naming the plugin: a broken plugin is never silently skipped.
"""

from __future__ import annotations

import functools

from suite.errors import PluginError, UnknownNameError
from suite.plugins import load_plugin, registered
from suite.task import ENTRY_POINT_GROUP, Task, TaskConfig


def _load(entry_point) -> Task:
    obj = load_plugin(entry_point, "task")
    try:
        task = obj() if isinstance(obj, type) and issubclass(obj, Task) else obj
    except Exception as err:  # a Task subclass whose constructor fails is as broken as a bad import
        raise PluginError(
            f"task plugin {entry_point.name!r} ({entry_point.value}) failed to instantiate: "
            f"{type(err).__name__}: {err}"
        ) from err
    if not isinstance(task, Task) or not isinstance(getattr(task, "config", None), TaskConfig):
        raise PluginError(
            f"task plugin {entry_point.name!r} ({entry_point.value}) is not a suite.task.Task "
            "with a TaskConfig `config`"
        )
    if task.config.name != entry_point.name:
        raise PluginError(
            f"task plugin {entry_point.name!r} ({entry_point.value}) declares name "
            f"{task.config.name!r}; the entry-point name and config name must match"
        )
    return task


@functools.cache
def _entry_points() -> dict[str, object]:
    return registered(ENTRY_POINT_GROUP, "task")


@functools.cache
def get_task(name: str) -> Task:
    eps = _entry_points()
    if name not in eps:
        valid = ", ".join(sorted(eps)) or "(none installed)"
        raise UnknownNameError(f"unknown task {name!r}; valid tasks: {valid}")
    return _load(eps[name])


def list_tasks() -> list[str]:
    """Names of all registered tasks (without loading them)."""
    return sorted(_entry_points())


def load_all_tasks() -> list[Task]:
    """Load every registered task; the first broken plugin raises PluginError."""
    return [get_task(name) for name in list_tasks()]


def clear_cache() -> None:
    """Forget discovered plugins (after installing a new one in the same process)."""
    _entry_points.cache_clear()
    get_task.cache_clear()
