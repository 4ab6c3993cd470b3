"""The machinery both preprocessing caches share (tasks/preprocessing_cache.py), on real files and
real processes: a build killed half-way loses nothing, the build lock holds across processes, and
the worker-count setting is checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock, Timeout

from suite.errors import CorruptDataError, UsageError
from tasks.ntu.cache import CacheSpec, SourceFile, ensure_cache
from tasks.preprocessing_cache import WORKERS_ENV, check_corrupt, worker_count
from tests.helpers.ntu_files import write_sample

ROOT = Path(__file__).resolve().parents[1]
SPEC = CacheSpec(frames=16, max_bodies=2)

# Builds the cache of every file in a folder, as a trainer would (one process, no pool).
BUILDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tasks.ntu.cache import CacheSpec, SourceFile, ensure_cache
    folder, cache_root = Path(sys.argv[1]), Path(sys.argv[2])
    sources = [SourceFile(p.stem, p, p.name, p.stat().st_size, p.stat().st_mtime_ns, 0) for p in sorted(folder.iterdir())]
    ensure_cache(sources, cache_root, CacheSpec(frames=16, max_bodies=2), workers=1)
""")


def _sources(folder: Path) -> list[SourceFile]:
    return [SourceFile(p.stem, p, p.name, p.stat().st_size, p.stat().st_mtime_ns, 0) for p in sorted(folder.iterdir())]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe to stop the builder half-way")
def test_a_build_killed_half_way_loses_nothing_and_its_lock_is_released(tmp_path):
    rng = np.random.default_rng(4)
    src, cache_root = tmp_path / "src", tmp_path / "cache"
    for i in range(12):
        write_sample(src, f"S001C001P{1 + i:03d}R001A{1 + i:03d}", rng, frames=20, bodies=1 + i % 2)
    first = ensure_cache(_sources(src), cache_root, SPEC, workers=1)
    manifest, clips = (first.folder / "manifest.json").read_text(), np.array(first.clips())

    for path in src.iterdir():  # every file looks changed, so the next build parses them all again
        os.utime(path, ns=(time.time_ns(), time.time_ns()))
    # A named pipe sorted last: the builder parses the real files, then blocks reading it, mid-build.
    os.mkfifo(src / "S999C001P001R001A001.skeleton")
    builder = subprocess.Popen([sys.executable, "-c", BUILDER, str(src), str(cache_root)], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not list(cache_root.glob(".*.building-*")):
            assert builder.poll() is None, f"the builder exited early ({builder.returncode})"
            assert time.monotonic() < deadline, "the builder never started building"
            time.sleep(0.02)
        with pytest.raises(Timeout):  # the builder holds the cache's lock: another process waits
            FileLock(f"{first.folder}.lock").acquire(timeout=0.5)
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait()
    assert builder.returncode == -signal.SIGKILL

    assert (first.folder / "manifest.json").read_text() == manifest  # the previous cache is untouched
    np.testing.assert_array_equal(first.clips(), clips)
    (src / "S999C001P001R001A001.skeleton").unlink()
    again = ensure_cache(_sources(src), cache_root, SPEC, workers=1)  # the lock died with the builder
    np.testing.assert_array_equal(again.clips(), clips)
    assert not list(cache_root.glob(".*")), "the killed builder's staging folder is left behind"


def test_worker_count_follows_the_request_then_the_environment(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert worker_count(None, 10_000) == (os.cpu_count() or 1)
    assert worker_count(8, 3) == 3  # never more processes than jobs
    monkeypatch.setenv(WORKERS_ENV, "2")
    assert worker_count(None, 10) == 2 and worker_count(5, 10) == 5
    monkeypatch.setenv(WORKERS_ENV, "two")
    with pytest.raises(UsageError, match=f"{WORKERS_ENV}='two': expected a whole number"):
        worker_count(None, 10)


def test_corrupt_files_are_raised_with_the_first_or_counted_when_skipped(caplog):
    errors = ["a.skeleton: line 3: expected 25 joints", "b.skeleton: file ends early"]
    with pytest.raises(CorruptDataError, match=r"ntu60 \(train\): 2 corrupt file\(s\); first: a\.skeleton: line 3.*--skip-corrupt"):
        check_corrupt("ntu60 (train)", errors, skip_corrupt=False)
    check_corrupt("ntu60 (train)", errors, skip_corrupt=True, names=["a", "b"])
    assert "ntu60 (train): skipped 2 corrupt file(s): a; b" in caplog.text
    check_corrupt("ntu60 (train)", [], skip_corrupt=False)  # nothing corrupt: nothing to say
