"""A task's recipe as a table: each value the suite trains with and where it comes from.

Rows come from the task's config: recipe fields, the `extra` knobs, the task-level values the
official configs also set (classes, input shape, model overrides), then the official settings
the suite does not apply, with the reason. `suite tasks --recipe TASK` prints it, and README's
recipe tables are this table (a test compares them).
"""

from __future__ import annotations

import dataclasses

from suite.task import SOURCED_TASK_FIELDS, Recipe, Task

OFFICIAL_REPO = "github.com/ZK-Zhou/spikformer (commit 6212689)"
NOT_APPLIED = "not applied"


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _source(config, key: str) -> str:
    source = config.sources.get(key)
    if source is None:
        return "suite default"
    return "; ".join(source) if isinstance(source, list) else str(source)


def recipe_rows(task: Task) -> list[dict]:
    """[{key, value, source}] for the task's recipe (see module doc)."""
    config = task.config
    rows = [
        {"key": f.name, "value": _text(getattr(config.recipe, f.name)), "source": _source(config, f.name)}
        for f in dataclasses.fields(Recipe)
        if getattr(config.recipe, f.name) is not None or f.name in config.sources  # None: no such choice here
    ]
    rows += [{"key": k, "value": _text(v), "source": _source(config, k)} for k, v in config.extra.items()]
    rows += [
        {"key": k, "value": _text(getattr(config, k)), "source": _source(config, k)}
        for k in SOURCED_TASK_FIELDS
        if k in config.sources
    ]
    rows += [{"key": k, "value": NOT_APPLIED, "source": why} for k, why in config.not_applicable.items()]
    return rows


def markdown_table(task: Task) -> str:
    """The README form: official key and source | suite value."""
    lines = ["| suite key | suite value | official source (file:line key) |", "|---|---|---|"]
    for row in recipe_rows(task):
        cells = [f"`{row['key']}`", row["value"], row["source"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
