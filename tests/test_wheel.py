"""The suite as a wheel: built from a copy of the checkout, installed into a fresh venv, run from a
folder outside the checkout, with the installed `suite` script.

The fresh venv gets the wheel (`pip install --no-deps`) and nothing of the project otherwise. Its
dependencies are those of the interpreter running the tests, made visible through one .pth file
that adds a folder of links to that interpreter's site-packages minus this project's own entries
(its editable install, dist-info, or installed packages): so nothing is downloaded again, yet every
`suite`, `tasks` module, data file and entry point comes from the wheel. The run compiles the
native kernels into an empty cache from the sources and headers the wheel ships, and the log must
say that they ran.

A second check imports the packages straight from the wheel file (zipimport): there `__file__`
is no folder on disk, so a data file found any way other than importlib.resources fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from suite import schema, tracking

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
# Folders of a working checkout that are not the project: a venv, build output, data, run output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "data", "shared",
    "mlruns", "ray_results",
)
TIMEOUT_S = 600
# How the wheel is built, here and in cluster/Dockerfile (+ the output folder and the source folder).
BUILD_WHEEL = ["pip", "wheel", "--no-cache-dir", "--no-deps", "--no-build-isolation", "-w"]


def _check(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    return done


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheel")


@pytest.fixture(scope="module")
def wheel(work) -> Path:
    """The wheel `pip wheel` builds from a copy of the checkout (building in place would leave
    build/ and *.egg-info in it). No build isolation: the test extra installs setuptools, so
    nothing is downloaded."""
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    _check([sys.executable, "-m", *BUILD_WHEEL, str(work / "dist"), "--no-index", str(source)])
    (built,) = (work / "dist").glob("spikformer_suite-*.whl")
    return built


def _top_level_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/")[0] for name in archive.namelist()}


def _is_this_project(name: str, own: set[str]) -> bool:
    return name in own or "spikformer_suite" in name.replace("-", "_").lower()


def _fresh_venv(folder: Path, wheel: Path) -> Path:
    """A venv that sees the test interpreter's dependencies but not this project; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=TIMEOUT_S)
    python = folder / "bin" / "python"
    own = _top_level_names(wheel)
    deps = folder / "deps"
    deps.mkdir()
    for site_dir in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(site_dir).iterdir():
            if not _is_this_project(entry.name, own) and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    purelib = _check([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # addsitedir also runs the .pth files among the dependencies (setuptools' and others' hooks)
    Path(purelib, "dependencies.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    return python


def _clean_env(home: Path) -> dict[str, str]:
    """This process's environment without anything that points into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(SUITE_HOME=str(home / "suite-home"), SUITE_KERNEL_CACHE=str(home / "kernels"),
               SUITE_DATA_ROOT=str(home / "data"), SUITE_NATIVE_KERNELS="1")  # fmt: skip
    return env


@pytest.fixture(scope="module")
def installed(work, wheel) -> Path:
    """The bin/ folder of a fresh venv with the wheel installed."""
    python = _fresh_venv(work / "venv", wheel)
    _check([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    return python.parent


def test_the_wheel_holds_every_file_the_packages_read(wheel):
    """Everything in the package folders that is not Python source ships (kernel headers included)."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    expected = {
        path.relative_to(ROOT).as_posix()
        for package in ("suite", "tasks")
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "suite/models/kernels/csrc/storage.h" in expected
    assert sorted(expected - shipped) == []


def test_installed_suite_runs_from_outside_the_checkout(installed, tmp_path):
    env, cwd = _clean_env(tmp_path), tmp_path
    suite = str(installed / "suite")

    where = _check([str(installed / "python"), "-c", "import suite, tasks; print(suite.__file__, tasks.__file__)"],
                   env=env, cwd=cwd).stdout  # fmt: skip
    assert str(ROOT) not in where and "site-packages" in where, where

    usage = _check([suite, "--help"], env=env, cwd=cwd).stdout
    assert usage.startswith("usage: suite "), usage  # the program name is the one the user typed

    models = _check([suite, "models"], env=env, cwd=cwd).stdout
    assert re.search(r"^spikformer-4-384\s+cifar\s+3x32x32\s+10\s+4\s+12\s+9,324,730\s", models, re.M), models

    tasks = _check([suite, "tasks"], env=env, cwd=cwd).stdout
    for name in ("cifar10", "cifar100", "imagenet", "dvs128-gesture", "cifar10-dvs", "ntu60", "ntu120"):
        assert re.search(rf"^{re.escape(name)}\s", tasks, re.M), f"task {name} missing:\n{tasks}"

    run = _check([suite, "run", "--task", "cifar10", "--model", "spikformer-1-32", "--data", "synthetic",
                  "--epochs", "1", "--synthetic-size", "16", "--batch-size", "8", "--time-steps", "2",
                  "--warmup-epochs", "1", "--amp", "off", "--workers", "1"], env=env, cwd=cwd)  # fmt: skip
    log = run.stdout + run.stderr
    kernels = list((tmp_path / "kernels").glob("native_cpu-*.so"))
    assert len(kernels) == 1, f"the native kernels were not built from the wheel's sources:\n{log[-6000:]}"
    assert f"LIF backend: fused_cpu (native C++ kernels {kernels[0]})" in log, log[-6000:]
    (tags,) = _run_tags(tmp_path / "suite-home" / "mlflow.db")
    assert tags[schema.TAG_LIF_BACKEND] == f"fused_cpu (native C++ kernels {kernels[0]})"
    assert tags[schema.TAG_GIT_COMMIT] == "unknown"  # an installed copy is no checkout

    boards = _check([suite, "leaderboard", "--out", str(tmp_path / "boards")], env=env, cwd=cwd).stdout
    # board, real configs, best top-1, synthetic configs, published results (shipped in the wheel), excluded runs
    row = re.search(r"^cifar10 / default\s+0\s+-\s+1\s+(\d+)\s+0$", boards, re.M)
    assert row and int(row.group(1)) > 0, boards
    assert (tmp_path / "boards" / "index.html").is_file()


def _run_tags(store: Path) -> list[dict[str, str]]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking.sqlite_uri(store))
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`{schema.TAG_KIND}` = 'run'")
    return [run.data.tags for run in runs]


def test_the_packages_find_their_files_when_imported_from_the_wheel_file(work, wheel, tmp_path):
    """zipimport: no folder behind __file__, so only importlib.resources finds the data files.
    (The NTU tasks are left out: numba caches their compiled parser next to its source file, which
    a zip cannot hold; pip always unpacks wheels, so this is no limit of the installed suite.)"""
    python = _fresh_venv(work / "bare-venv", wheel)  # the dependencies only; the suite comes from the zip
    env = dict(_clean_env(tmp_path), PYTHONPATH=str(wheel))
    check = """
import suite
from suite.leaderboard.references import load_references
from suite.models.kernels import native_cpu
from suite.task_registry import get_task
from tasks.ntu.splits import bundled_missing_names
print(suite.__file__)
assert native_cpu.available(), native_cpu.status()
print(len(load_references()), len(bundled_missing_names("ntu120")))
print(*(get_task(name).recipe.model for name in ("cifar10", "cifar100", "imagenet", "dvs128-gesture", "cifar10-dvs")))
"""
    where, counts, models = _check([str(python), "-c", check], env=env, cwd=tmp_path).stdout.splitlines()
    assert where.startswith(str(wheel) + os.sep), where
    assert all(int(count) > 0 for count in counts.split()), counts
    assert models.split() == ["spikformer-4-384"] * 2 + ["spikformer-8-512"] + ["spikformer-2-256"] * 2
    assert list((tmp_path / "kernels").glob("native_cpu-*.so"))


def test_no_module_reads_files_next_to_its_source():
    """Data files are found through importlib.resources; `__file__` only tells whether the suite
    runs from a checkout (suite/ray_jobs_client.py: find_project_root)."""
    users = sorted(
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("suite", "tasks")
        for path in (ROOT / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "__file__" in line and not line.lstrip().startswith("#")
    )
    assert [user.split(":")[0] for user in users] == ["suite/ray_jobs_client.py"], users
