"""Convert event recordings to T-frame samples once, in parallel, and reuse them every epoch.

A cache lives under the task's data folder, like spikingjelly's `frames_number_T` folders:
`<data_dir>/frames_number_<T>_split_by_<mode>/<layout>/<split>/`, holding one compressed `.npz` per
sample (`frames`: `[T, 2, H, W]` event counts in the smallest unsigned dtype that holds them) and a
`manifest.json` naming each sample's file, label and source, every source file's size and
modification time, and the files skipped as corrupt. The manifest is written last, atomically, so a
crashed build is never mistaken for a finished one; a manifest whose settings or source files no
longer match what is on disk makes the cache stale, and it is rebuilt.

Workers are forked where the platform allows, as torch's DataLoader does, so a build also works from
a notebook, stdin or a script without a `__main__` guard (a spawned worker re-imports the main
module); workers run numpy code only. Elsewhere they are spawned, so a source item's `read` must be a
module-level function that a fresh interpreter can import.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from suite.errors import CorruptDataError, DataNotFoundError, SuiteError, UsageError
from tasks.events import check_sensor_range, events_to_frames

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CACHE_PREFIX = "frames_number_"
WORKERS_ENV = "SUITE_PREPROCESS_WORKERS"  # processes for a cache build; default: one per CPU core

# read(*paths) -> [(label, events), ...]; raises CorruptDataError for a bad file.
Reader = Callable[..., list[tuple[int, np.ndarray]]]


@dataclass(frozen=True)
class SourceItem:
    """One unit of preprocessing work: some files that together give one or more samples."""

    key: str  # unique within the split; names the cached files, so only [A-Za-z0-9_.-]
    paths: tuple[str, ...]  # every file `read` opens (fingerprinted for stale-cache detection)
    read: Reader


@dataclass
class FrameCache:
    """A finished cache: where it is, its samples and what was skipped."""

    directory: Path
    files: list[str]
    labels: list[int]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"source": ..., "error": ...}


def cache_directory(data_dir: Path, layout: str, split: str, time_steps: int, split_by: str) -> Path:
    return Path(data_dir) / f"{CACHE_PREFIX}{time_steps}_split_by_{split_by}" / layout / split


def _worker_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _workers_from_env() -> int:
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise UsageError(f"${WORKERS_ENV}={value!r}: expected a whole number of processes")
    return int(value)


def _fingerprint(items: list[SourceItem], root: Path) -> dict[str, list[int]]:
    prints = {}
    for item in items:
        for path in item.paths:
            try:
                stat = os.stat(path)
            except FileNotFoundError as err:
                raise DataNotFoundError(f"{path}: listed as part of the dataset but missing") from err
            prints[os.path.relpath(path, root)] = [stat.st_size, stat.st_mtime_ns]
    return prints


def _convert(item: SourceItem, directory: str, time_steps: int, split_by: str, sensor_size: tuple[int, int]):
    """Worker: read one item, write its samples; a corrupt file comes back as an error string."""
    try:
        samples = item.read(*item.paths)
        entries = []
        for index, (label, events) in enumerate(samples):
            origin = f"{item.paths[0]} (sample {index})" if len(samples) > 1 else item.paths[0]
            if events.size == 0:
                raise CorruptDataError(f"{origin}: contains no events")
            check_sensor_range(events, sensor_size, origin)
            counts = events_to_frames(events, time_steps, sensor_size, split_by)
            stored = counts.astype(np.min_scalar_type(int(counts.max())))
            name = f"{item.key}-{index:03d}.npz"
            tmp = Path(directory) / f".{name}.tmp"
            with open(tmp, "wb") as f:
                np.savez_compressed(f, frames=stored)
            os.replace(tmp, Path(directory) / name)
            entries.append({"file": name, "label": int(label), "source": item.key, "events": int(events.size)})
        return item.key, entries, None
    except CorruptDataError as err:
        return item.key, [], str(err)


def _stale_reason(manifest: dict, settings: dict, sources: dict, directory: Path) -> str | None:
    for name, value in settings.items():
        if manifest.get(name) != value:
            return f"{name} changed from {manifest.get(name)!r} to {value!r}"
    cached = manifest.get("sources", {})
    if cached != sources:
        changed = sorted(set(cached) ^ set(sources) | {k for k in cached if k in sources and cached[k] != sources[k]})
        return f"{len(changed)} source file(s) added, removed or modified since it was built (e.g. {changed[0]})"
    for sample in manifest.get("samples", []):
        if not (directory / sample["file"]).is_file():
            return f"cached sample {sample['file']} is missing"
    return None


def _read_manifest(directory: Path) -> dict | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("frame cache manifest %s is unreadable (%s); rebuilding", path, err)
        return None


def _corrupt_summary(skipped: list[dict[str, str]]) -> str:
    first = skipped[0]["error"]
    more = f" (and {len(skipped) - 1} more corrupt file(s))" if len(skipped) > 1 else ""
    return f"{first}{more}; pass --skip-corrupt to skip corrupt files (they are counted and logged)"


def build_or_load(
    directory: Path,
    items: list[SourceItem],
    *,
    root: Path,
    time_steps: int,
    split_by: str,
    sensor_size: tuple[int, int],
    skip_corrupt: bool,
    workers: int | None = None,
    description: str = "frames",
) -> FrameCache:
    """Return the cache for `items`, building it first if it is absent or stale."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SuiteError(
            f"cannot create the frame cache folder {directory}: {err}; the data root must be writable "
            "(copy the dataset to a writable --data-root)"
        ) from err
    settings = {
        "format": FORMAT_VERSION,
        "time_steps": time_steps,
        "split_by": split_by,
        "sensor_size": list(sensor_size),
        "items": [item.key for item in items],
    }
    with FileLock(str(directory) + ".lock"):
        sources = _fingerprint(items, root)
        manifest = _read_manifest(directory)
        reason = "it does not exist yet" if manifest is None else _stale_reason(manifest, settings, sources, directory)
        if reason is not None:
            if manifest is not None:
                log.warning("frame cache %s is stale (%s); rebuilding", directory, reason)
            manifest = _build(directory, items, settings, sources, time_steps, split_by, sensor_size, skip_corrupt,
                              workers, description)
    skipped = manifest["skipped"]
    if skipped and not skip_corrupt:
        raise CorruptDataError(_corrupt_summary(skipped))
    if skipped:
        log.warning("%s: skipped %d corrupt source(s), e.g. %s", description, len(skipped), skipped[0]["error"])
    samples = manifest["samples"]
    if not samples:
        raise DataNotFoundError(
            f"{description}: the split is empty: {len(items)} source file(s) gave no samples "
            f"({len(skipped)} skipped as corrupt) in {directory}"
        )
    return FrameCache(directory, [s["file"] for s in samples], [s["label"] for s in samples], skipped)


def _build(directory, items, settings, sources, time_steps, split_by, sensor_size, skip_corrupt, workers,
           description) -> dict:
    for stale in directory.glob("*.npz"):
        stale.unlink()
    (directory / MANIFEST).unlink(missing_ok=True)
    workers = min(len(items), workers or _workers_from_env() or os.cpu_count() or 1)
    log.info("%s: converting %d source file(s) to %d-frame samples with %d process(es) into %s",
             description, len(items), time_steps, max(workers, 1), directory)
    started = time.perf_counter()
    results: dict[str, tuple[list, str | None]] = {}
    bar = tqdm(total=len(items), desc=f"{description}: events -> {time_steps} frames", unit="file")
    args = (str(directory), time_steps, split_by, tuple(sensor_size))
    try:
        if workers <= 1:
            for item in items:
                key, entries, error = _convert(item, *args)
                results[key] = (entries, error)
                bar.update()
                if error and not skip_corrupt:
                    raise CorruptDataError(_corrupt_summary([{"error": error}]))
        else:
            with ProcessPoolExecutor(workers, mp_context=_worker_context()) as pool:
                futures = [pool.submit(_convert, item, *args) for item in items]
                for future in as_completed(futures):
                    key, entries, error = future.result()
                    results[key] = (entries, error)
                    bar.update()
                    if error and not skip_corrupt:
                        for pending in futures:
                            pending.cancel()
                        raise CorruptDataError(_corrupt_summary([{"error": error}]))
    finally:
        bar.close()
    samples, skipped = [], []
    for item in items:  # manifest order follows the (sorted) item order, not completion order
        entries, error = results[item.key]
        samples.extend(entries)
        if error:
            log.warning("skipping corrupt source: %s", error)
            skipped.append({"source": item.key, "error": error})
    manifest = {**settings, "sources": sources, "samples": samples, "skipped": skipped}
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, directory / MANIFEST)
    log.info("%s: cached %d samples in %.1fs (%d corrupt source(s) skipped)",
             description, len(samples), time.perf_counter() - started, len(skipped))
    return manifest
