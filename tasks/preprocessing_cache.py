"""What every preprocessing cache of the suite shares: its folder, its build lock, its manifest, the
worker processes that fill it, and how corrupt source files are counted and reported.

Two caches use it: NTU skeletons (`tasks/ntu/cache.py`, one memory-mapped array) and event frames
(`tasks/events/frame_cache.py`, one `.npz` per sample). They store different things, so each keeps its own
layout and freshness rules; the machinery around them lives here once:

- `build_lock` serialises builders of one cache: every process on the machine (several trainers,
  Ray Train workers, Tune trials) takes the same lock file beside the cache folder, so one builds
  and the others then find the finished cache (or are told how to make the data root writable);
- `read_manifest` / `write_manifest` read a manifest (an unreadable one means "rebuild") and write
  one atomically, so a build killed half-way never looks finished;
- `preprocess_all` runs one module-level function over many jobs, in order, with a progress bar,
  in this process or in worker processes (`worker_count`, `$SUITE_PREPROCESS_WORKERS`);
- `check_corrupt` turns the corrupt files a build recorded into one error naming the first of them,
  or, with `skip_corrupt`, a counted warning.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from tqdm import tqdm

from suite.errors import CorruptDataError, SuiteError, UsageError

log = logging.getLogger(__name__)

WORKERS_ENV = "SUITE_PREPROCESS_WORKERS"  # processes for a cache build; default: one per CPU core
SKIP_CORRUPT_HINT = "pass skip_corrupt=True (--skip-corrupt) to leave them out (they are counted and logged)"


@contextmanager
def build_lock(folder: Path, hint: str) -> Iterator[None]:
    """Hold the machine-wide lock of the cache in `folder` (a lock file beside it) for one
    check-or-build; `hint` says how to get a writable data root if the lock cannot be created."""
    lock = Path(f"{folder}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as err:
        raise SuiteError(f"cannot write the preprocessing cache {folder} ({err.strerror or err}); {hint}") from err
    with FileLock(lock):
        yield


def read_manifest(path: Path) -> dict | None:
    """The manifest at `path`, or None when it is absent or unreadable (the cache is then rebuilt)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("cache manifest %s is unreadable (%s); the cache will be rebuilt", path, err)
        return None


def write_manifest(path: Path, manifest: dict) -> None:
    """Write `manifest` to `path` in one rename, so a reader sees the old one or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)


def worker_count(requested: int | None, jobs: int) -> int:
    """Processes for `jobs` jobs: `requested`, else $SUITE_PREPROCESS_WORKERS, else one per CPU core."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value and not value.isdigit():
        raise UsageError(f"${WORKERS_ENV}={value!r}: expected a whole number of processes")
    workers = requested or int(value or 0) or os.cpu_count() or 1
    return max(1, min(workers, jobs))


def worker_context() -> multiprocessing.context.BaseContext:
    # One start method for every cache build: forkserver where the platform has it, else spawn.
    # Not fork: builds run inside Ray workers and trainers whose other threads (torch's OpenMP and
    # intra-op pools, Ray's gRPC and log threads, MLflow's async logging) may hold a lock at the
    # moment of the fork, and a forked child inherits that lock held forever (a silent hang).
    # The fork server is started once per process from a clean interpreter and forks each worker
    # from there, so workers start fast and inherit none of that. Both methods re-import the
    # caller's main module as `__mp_main__` (guarded code does not run; `python -m suite`, Ray
    # workers, notebooks and stdin are fine), and the job function and its arguments travel by
    # pickle, so they must be importable module-level objects; workers read the real files by path.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def preprocess_all(
    function: Callable[[Any], Any],
    jobs: Sequence[Any],
    *,
    workers: int | None,
    description: str,
    unit: str = "file",
    in_process_below: int = 0,
) -> Iterator[Any]:
    """Yield `function(job)` for each job, in order, with a progress bar.

    Runs in this process when one worker is asked for or there are fewer than `in_process_below`
    jobs (starting workers costs about a second), else in `worker_count(workers, len(jobs))` worker
    processes. A caller that may stop early (e.g. at the first corrupt file) wraps the iterator in
    `contextlib.closing`, so the jobs not yet started are cancelled at once.
    """
    count = worker_count(workers, len(jobs)) if jobs else 1
    with tqdm(total=len(jobs), desc=description, unit=unit, leave=False) as progress:
        if count == 1 or len(jobs) < in_process_below:
            for job in jobs:
                yield function(job)
                progress.update()
            return
        log.debug("%s: preprocessing in %d worker processes", description, count)
        pool = concurrent.futures.ProcessPoolExecutor(count, mp_context=worker_context())
        try:
            chunk = max(1, min(64, len(jobs) // (count * 8)))
            for result in pool.map(function, jobs, chunksize=chunk):
                yield result
                progress.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def check_corrupt(where: str, errors: Sequence[str], *, skip_corrupt: bool, names: Sequence[str] = ()) -> None:
    """Raise for the corrupt source files a build recorded (`errors`, one message each, naming the
    file), or with `skip_corrupt` log how many were skipped (and which: `names`, else the errors)."""
    if not errors:
        return
    if not skip_corrupt:
        raise CorruptDataError(
            f"{where}: {len(errors)} corrupt file(s); first: {errors[0]} -- fix or re-download them, or "
            f"{SKIP_CORRUPT_HINT}"
        )
    shown = list(names or errors)
    log.warning("%s: skipped %d corrupt file(s): %s", where, len(errors),
                "; ".join(shown[:5]) + (" ..." if len(shown) > 5 else ""))
