"""Entry-point plugins (tasks, model families): discovery and loading, each failure a PluginError
naming the plugin. A broken plugin is never silently skipped."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from suite.errors import PluginError


def registered(group: str, kind: str) -> dict[str, EntryPoint]:
    """The entry points of `group` by name (without loading them); a name registered twice, to
    different objects, is refused. `kind` names the plugins in messages ("task", "model family")."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        if ep.name in found and found[ep.name].value != ep.value:
            raise PluginError(f"{kind} name {ep.name!r} is registered twice: {found[ep.name].value} and {ep.value}")
        found[ep.name] = ep
    return found


def load_plugin(ep: EntryPoint, kind: str) -> object:
    """The object `ep` points to; any import-time failure is the plugin's fault and names it."""
    try:
        return ep.load()
    except Exception as err:
        raise PluginError(f"{kind} plugin {ep.name!r} ({ep.value}) failed to load: {type(err).__name__}: {err}") from err
