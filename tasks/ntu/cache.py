"""Preprocess NTU `.skeleton` files once into a memory-mapped cache; later epochs never re-parse.

Layout of one cache (`<data dir>/cache/<key>/`, key = hash of the preprocessing settings):
    clips.npy      float32 [samples, frames, bodies, 25, 3], row i belongs to manifest sample i
    labels.npy     int64 [samples], 0-based action labels
    manifest.json  settings, array shapes, and per sample: name, source path (relative to the data
                   dir), size, mtime_ns, label, frames (how many leading frames of its row hold data),
                   and the parse error if the file is corrupt

The settings name the preprocessing (`PREPROCESSINGS`): "suite" stores every sample resampled to
`frames`; "ctrgcn" stores CTR-GCN's denoised, centred sequence at its own length, zero-padded to
`frames` (its capacity, 300). Each gets its own key, so the two never mix.

The cache is fresh when every source's path, size and mtime match the manifest. Otherwise it is
rebuilt incrementally: unchanged samples are copied from the old arrays, only new or changed files
are parsed (in a process pool, with a progress bar), and the new folder replaces the old one in one
rename, so a reader never sees a half-written cache (a build killed half-way leaves the previous
cache as it was, and a staging folder that the next build removes). The lock, worker processes and
corrupt-file reporting are `tasks.preprocessing_cache`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from suite.errors import CorruptDataError
from tasks.ntu.ctrgcn import ctrgcn_sequence, fit_capacity
from tasks.ntu.preprocess import COORDS, skeleton_to_clip
from tasks.ntu.skeleton import JOINTS, read_skeleton
from tasks.preprocessing_cache import build_lock, preprocess_all, read_manifest, write_manifest

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump whenever the preprocessing output changes
MANIFEST = "manifest.json"
_IN_PROCESS_BELOW = 256  # fewer files: starting worker processes (~1-2 s) costs more than it saves
_COPY_CHUNK = 2048
PREPROCESSINGS = ("suite", "ctrgcn")  # tasks/ntu/preprocess.py, tasks/ntu/ctrgcn.py


@dataclass(frozen=True)
class CacheSpec:
    frames: int  # clip length ("suite") or capacity per sample ("ctrgcn")
    max_bodies: int
    dataset: str = "ntu"  # part of the key: ntu60 and ntu120 may share one folder (NTU60 is a subset)
    preprocess: str = "suite"  # one of PREPROCESSINGS

    def __post_init__(self):
        if self.preprocess not in PREPROCESSINGS:
            raise ValueError(f"preprocess {self.preprocess!r} is not one of {PREPROCESSINGS}")

    def key(self) -> str:
        settings = {"version": CACHE_VERSION, **asdict(self), "joints": JOINTS, "coords": COORDS}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def clip_shape(self) -> tuple[int, ...]:
        return (self.frames, self.max_bodies, JOINTS, COORDS)


@dataclass(frozen=True)
class SourceFile:
    name: str
    path: Path
    relpath: str  # relative to the data dir, as stored in the manifest
    size: int
    mtime_ns: int
    label: int

    def signature(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


class SkeletonCache:
    """A built cache: the manifest plus lazily opened, read-only memory maps of the arrays."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.manifest = manifest
        self.samples: list[dict] = manifest["samples"]
        self.row_of = {sample["name"]: row for row, sample in enumerate(self.samples)}

    @property
    def clips_path(self) -> Path:
        return self.folder / self.manifest["clips"]["file"]

    def clips(self) -> np.ndarray:
        return np.load(self.clips_path, mmap_mode="r")

    def labels(self) -> np.ndarray:
        return np.load(self.folder / self.manifest["labels"]["file"])

    def frames(self) -> np.ndarray:
        """int64 [samples]: the leading frames of each row that hold data (0 for a corrupt file)."""
        return np.array([s["frames"] for s in self.samples], dtype=np.int64)


def ensure_cache(
    sources: list[SourceFile],
    cache_root: Path,
    spec: CacheSpec,
    *,
    workers: int | None = None,
    description: str = "ntu",
) -> SkeletonCache:
    """The cache for exactly these sources and settings: reused when fresh, else (re)built."""
    sources = sorted(sources, key=lambda s: s.name)
    folder = cache_root / spec.key()
    hint = "make that folder writable, or use a writable --data-root holding the .skeleton folder (a symlink is enough)"
    with build_lock(folder, hint):
        old = _read_manifest(folder)
        if old is not None and _is_fresh(old, sources, spec):
            log.debug("%s: cache %s is fresh (%d samples)", description, folder, len(sources))
            return SkeletonCache(folder, old)
        return _build(folder, sources, spec, old, workers, description)


def _is_fresh(manifest: dict, sources: list[SourceFile], spec: CacheSpec) -> bool:
    if manifest.get("version") != CACHE_VERSION or manifest.get("spec") != asdict(spec):
        return False
    recorded = [(s["name"], s["path"], s["size"], s["mtime_ns"]) for s in manifest["samples"]]
    current = [(s.name, s.relpath, s.size, s.mtime_ns) for s in sources]
    return recorded == current


def _read_manifest(folder: Path) -> dict | None:
    manifest = read_manifest(folder / MANIFEST)
    if manifest is None:
        return None
    try:
        shape = tuple(np.load(folder / manifest["clips"]["file"], mmap_mode="r").shape)
    except (OSError, ValueError, KeyError, TypeError) as err:
        if folder.exists():
            log.warning("cache %s is unreadable (%s); it will be rebuilt", folder, err)
        return None
    if shape != tuple(manifest["clips"]["shape"]) or shape[0] != len(manifest["samples"]):
        log.warning("cache %s: clips.npy has shape %s, the manifest says %s; rebuilding", folder, shape,
                    manifest["clips"]["shape"])
        return None
    return manifest


def _build(folder, sources, spec, old, workers, description) -> SkeletonCache:
    started = time.perf_counter()
    reusable = _reusable_rows(old, sources, spec)
    for pattern in (".{}.building-*", ".{}.retired-*"):  # left by a builder killed half-way (we hold the lock)
        for leftover in folder.parent.glob(pattern.format(folder.name)):
            shutil.rmtree(leftover, ignore_errors=True)
    staging = folder.with_name(f".{folder.name}.building-{os.getpid()}")
    staging.mkdir(parents=True)
    shape = (len(sources), *spec.clip_shape())
    clips = np.lib.format.open_memmap(staging / "clips.npy", mode="w+", dtype=np.float32, shape=shape)
    errors: list[str | None] = [None] * len(sources)
    lengths = [0] * len(sources)
    if reusable:
        _copy_rows(old, folder, clips, errors, lengths, reusable)
    todo = [row for row in range(len(sources)) if row not in reusable]
    log.info(
        "%s: preprocessing %d skeleton files into %s (%d reused from the previous cache)",
        description, len(todo), folder, len(reusable),
    )
    jobs = [(str(sources[row].path), spec) for row in todo]
    results = preprocess_all(_process_one, jobs, workers=workers, description=f"{description}: preprocessing",
                             in_process_below=_IN_PROCESS_BELOW)
    for row, (clip, length, error) in zip(todo, results, strict=True):
        if clip is not None:
            clips[row] = clip
        errors[row], lengths[row] = error, length
    clips.flush()
    del clips
    np.save(staging / "labels.npy", np.array([s.label for s in sources], dtype=np.int64))
    manifest = _manifest(sources, spec, shape, errors, lengths)
    write_manifest(staging / MANIFEST, manifest)
    _swap_in(staging, folder)
    corrupt = sum(e is not None for e in errors)
    log.info(
        "%s: cache ready: %d samples (%d corrupt) in %.1fs", description, len(sources), corrupt,
        time.perf_counter() - started,
    )
    return SkeletonCache(folder, manifest)


def _reusable_rows(old: dict | None, sources, spec) -> dict[int, int]:
    """new row -> old row for sources whose file is unchanged since the old cache was built."""
    if old is None or old.get("version") != CACHE_VERSION or old.get("spec") != asdict(spec):
        return {}
    previous = {(s["path"], s["size"], s["mtime_ns"]): row for row, s in enumerate(old["samples"])}
    reusable = {}
    for row, source in enumerate(sources):
        old_row = previous.get((source.relpath, *source.signature()))
        if old_row is not None:
            reusable[row] = old_row
    return reusable


def _copy_rows(old: dict, folder: Path, clips: np.ndarray, errors: list, lengths: list, reusable: dict[int, int]) -> None:
    old_clips = np.load(folder / old["clips"]["file"], mmap_mode="r")
    pairs = sorted(reusable.items())
    for begin in range(0, len(pairs), _COPY_CHUNK):
        new_rows, old_rows = zip(*pairs[begin : begin + _COPY_CHUNK])
        clips[list(new_rows)] = old_clips[list(old_rows)]
    for new_row, old_row in pairs:
        errors[new_row], lengths[new_row] = old["samples"][old_row]["error"], old["samples"][old_row]["frames"]


def _process_one(job: tuple[str, CacheSpec]) -> tuple[np.ndarray | None, int, str | None]:
    path, spec = job
    try:
        skeleton = read_skeleton(path)
        if spec.preprocess == "ctrgcn":
            return *fit_capacity(ctrgcn_sequence(skeleton, source=path), spec.frames), None
        return skeleton_to_clip(skeleton, spec.frames, spec.max_bodies, source=path), spec.frames, None
    except CorruptDataError as err:
        return None, 0, str(err)


def _manifest(sources, spec, shape, errors, lengths) -> dict:
    return {
        "format": "spikformer-suite NTU skeleton cache",
        "version": CACHE_VERSION,
        "spec": asdict(spec),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "clips": {"file": "clips.npy", "shape": list(shape), "dtype": "float32",
                  "axes": ["sample", "frame", "body", "joint", "xyz"]},
        "labels": {"file": "labels.npy", "shape": [shape[0]], "dtype": "int64"},
        "samples": [
            {"name": s.name, "path": s.relpath, "size": s.size, "mtime_ns": s.mtime_ns, "label": s.label,
             "frames": length, "error": error}
            for s, error, length in zip(sources, errors, lengths)
        ],
    }


def _swap_in(staging: Path, folder: Path) -> None:
    retired = folder.with_name(f".{folder.name}.retired-{os.getpid()}")
    if folder.exists():
        folder.rename(retired)  # open memory maps of the old arrays stay valid (POSIX)
    staging.rename(folder)
    shutil.rmtree(retired, ignore_errors=True)
