"""Convert event recordings to T-frame samples once, in parallel, and reuse them every epoch.

A cache lives under the task's data folder, like spikingjelly's `frames_number_T` folders:
`<data_dir>/frames_number_<T>_split_by_<mode>/<layout>/<split>/`, holding one compressed `.npz` per
sample (`frames`: `[T, 2, H, W]` event counts in the smallest unsigned dtype that holds them) and a
`manifest.json` naming each sample's file, label and source, every source file's size and
modification time, and the files skipped as corrupt. The manifest is written last, atomically, so a
crashed build is never mistaken for a finished one; a manifest whose settings or source files no
longer match what is on disk makes the cache stale, and it is rebuilt.

The lock, worker processes and corrupt-file reporting are `tasks.preprocessing_cache`'s; its workers
start from a fresh interpreter, so a source item's `read` must be a module-level function.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from suite.errors import CorruptDataError, DataNotFoundError
from tasks.events.stream import check_sensor_range, events_to_frames
from tasks.preprocessing_cache import build_lock, check_corrupt, preprocess_all, read_manifest, write_manifest

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CACHE_PREFIX = "frames_number_"

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


def _convert(job: tuple[SourceItem, str, int, str, tuple[int, int]]):
    """Worker: read one item, write its samples; a corrupt file comes back as an error string."""
    item, directory, time_steps, split_by, sensor_size = job
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
    settings = {
        "format": FORMAT_VERSION,
        "time_steps": time_steps,
        "split_by": split_by,
        "sensor_size": list(sensor_size),
        "items": [item.key for item in items],
    }
    with build_lock(directory, "the data root must be writable (copy the dataset to a writable --data-root)"):
        directory.mkdir(exist_ok=True)
        sources = _fingerprint(items, root)
        manifest = read_manifest(directory / MANIFEST)
        reason = "it does not exist yet" if manifest is None else _stale_reason(manifest, settings, sources, directory)
        if reason is not None:
            if manifest is not None:
                log.warning("frame cache %s is stale (%s); rebuilding", directory, reason)
            manifest = _build(directory, items, settings, sources, time_steps, split_by, sensor_size, skip_corrupt,
                              workers, description)
    skipped = manifest["skipped"]
    check_corrupt(description, [s["error"] for s in skipped], skip_corrupt=skip_corrupt,
                  names=[s["source"] for s in skipped])
    samples = manifest["samples"]
    if not samples:
        raise DataNotFoundError(
            f"{description}: the split is empty: {len(items)} source file(s) gave no samples "
            f"({len(skipped)} skipped as corrupt) in {directory}"
        )
    return FrameCache(directory, [s["file"] for s in samples], [s["label"] for s in samples], skipped)


def _build(directory, items, settings, sources, time_steps, split_by, sensor_size, skip_corrupt, workers,
           description) -> dict:
    for stale in [*directory.glob("*.npz"), *directory.glob(".*.tmp*")]:  # .tmp*: a build killed half-way
        stale.unlink()
    (directory / MANIFEST).unlink(missing_ok=True)
    log.info("%s: converting %d source file(s) to %d-frame samples into %s", description, len(items), time_steps,
             directory)
    started = time.perf_counter()
    jobs = [(item, str(directory), time_steps, split_by, tuple(sensor_size)) for item in items]
    samples, skipped = [], []
    results = preprocess_all(_convert, jobs, workers=workers, description=f"{description}: events -> {time_steps} frames")
    with closing(results):  # leaving early (a corrupt file) cancels the jobs not yet started
        for key, entries, error in results:
            samples.extend(entries)
            if error is None:
                continue
            if not skip_corrupt:
                check_corrupt(description, [error], skip_corrupt=False)
            log.warning("skipping corrupt source: %s", error)
            skipped.append({"source": key, "error": error})
    manifest = {**settings, "sources": sources, "samples": samples, "skipped": skipped}
    write_manifest(directory / MANIFEST, manifest)
    log.info("%s: cached %d samples in %.1fs (%d corrupt source(s) skipped)",
             description, len(samples), time.perf_counter() - started, len(skipped))
    return manifest
