"""Third-party plugins as real installed distributions: a module plus a `*.dist-info` folder with
`entry_points.txt`, put on sys.path / PYTHONPATH, which is exactly what importlib.metadata reads
for an installed wheel. Used for task plugins and model-family plugins alike."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def make_plugin(site: Path, dist: str, entry_points: dict[str, str], files: dict[str, str], *, group: str) -> Path:
    """Write modules/files under `site` and an installed-distribution record registering
    `entry_points` (name -> "module:object") in the entry-point group `group`."""
    for relative, text in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{group}]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def run_suite(args: list[str], pythonpath: Path, cwd: Path, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    """`python -m suite ARGS` with `pythonpath` first on PYTHONPATH (and `env` set)."""
    path = os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "suite", *args],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=path, **env),
        cwd=cwd,
        timeout=timeout,
    )


def table(output: str) -> dict[str, dict[str, str]]:
    """The first table of a command's output (suite.table's layout: every cell starts where its
    header does, headers two or more spaces apart) as {first cell: {header: cell}}."""
    header, *lines = output.splitlines()
    starts = [0] + [m.end() for m in re.finditer(r"\S {2,}(?=\S)", header)]
    spans = list(zip(starts, [*starts[1:], None]))
    names = [header[a:b].strip() for a, b in spans]
    rows = {}
    for line in lines:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in spans]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


@pytest.fixture
def plugin_path(monkeypatch):
    """Put a site folder on sys.path for this test only, with a fresh discovery of tasks and model families."""
    from suite.models.families import clear_cache as clear_families
    from suite.task_registry import clear_cache as clear_tasks

    added = []

    def add(site: Path) -> None:
        monkeypatch.syspath_prepend(str(site))
        added.extend(p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info"))
        added.extend(p.stem for p in site.glob("*.py"))  # single-module plugins
        clear_tasks()
        clear_families()

    yield add
    for module in [m for m in sys.modules if m.split(".")[0] in added]:
        del sys.modules[module]
    clear_tasks()
    clear_families()
