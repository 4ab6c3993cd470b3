"""NTU RGB+D 60 and 120 skeleton action recognition (Shahroudy et al. 2016; Liu et al. 2019).

Data: the raw `.skeleton` text files, found under `<data root>/ntu60/` (or `ntu120/`) directly or one
folder down (the official zips unpack to `nturgb+d_skeletons/` and, for NTU120,
`nturgbd_skeletons_s018_to_s032/`). Samples on the official missing-skeleton list are excluded by
name and counted; an NTU120 folder also works for ntu60 (setups 18+ and actions 61+ are left out).

Pipeline: every file is parsed once (`skeleton.py`, compiled tokenizer), preprocessed, and stored
in a memory-mapped cache with a manifest (`cache.py`); datasets of both splits and every protocol
read that one cache. Each sample then becomes a Spikformer input (`encode.py`). Two preprocessings
(`recipe.preprocess`, `--preprocess`), each with its own cache; both feed the encoder a clip of
`extra.frames` = 64 frames x 2 bodies x 25 joints x (x, y, z) in metres, origin at the spine-middle
joint of the main actor in the first frame:
- `suite` (the default, `preprocess.py`): the two most moving bodies (per-joint deviation over
  time); the whole sequence resampled to 64 frames once, in the cache; training augmentation: a
  yaw rotation within +-`augment_max_angle` degrees and a scaling within +-`augment_scale`.
- `ctrgcn` (`ctrgcn.py`, for numbers comparable to the skeleton literature): CTR-GCN's denoising
  (body length, spread and motion) and centring; the cache keeps the whole sequence and each read
  takes CTR-GCN's crop resized to 64 frames (train: a random 50-100% crop, eval: the centre 95%);
  training augmentation: CTR-GCN's random rotation about x, y and z within +-0.3 rad.

Defaults and why (also recorded in ntu60.yaml / ntu120.yaml):
- encoder `temporal`: T segments of the clip are the T time steps (sample `[T, 3, 16, 52]`), so the
  spiking dynamics see real motion and each step is T times cheaper than a repeated whole clip;
  `NTU60(encoder="static")` gives the whole 64-frame clip as one `[3, 64, 52]` image instead.
- stem `cifar`: a skeleton image is tiny (16 x 52 per step); the cifar stem keeps stride 1 in its
  first convolutions and max-pools twice (to 4 x 13 = 52 tokens), whereas the imagenet stem would
  pool it away and the dvs stem expects 2 event channels.
- recipe: Spikformer was not trained on NTU by Zhou et al.; the YAML recipe is the suite default.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from importlib import resources
from pathlib import Path
from typing import ClassVar

import numpy as np

from suite.errors import CorruptDataError, DataNotFoundError, PluginError
from suite.task import Task, TaskConfig
from tasks.ntu.cache import PREPROCESSINGS, CacheSpec, SkeletonCache, SourceFile, ensure_cache
from tasks.ntu.ctrgcn import MAX_FRAMES, SLOTS, random_rotation
from tasks.ntu.dataset import NTUSkeletonDataset
from tasks.ntu.encode import ENCODERS, SkeletonEncoder, augment_clip
from tasks.ntu.preprocess import COORDS
from tasks.ntu.skeleton import JOINTS
from tasks.ntu.splits import (
    MISSING_LIST_NAMES,
    bundled_missing_names,
    in_dataset,
    is_train,
    parse_sample_name,
    read_missing_list,
)
from tasks.preprocessing_cache import check_corrupt

log = logging.getLogger(__name__)

_HERE = resources.files("tasks.ntu")  # the configs ship inside the package
SUFFIX = ".skeleton"
CACHE_DIR = "cache"


@dataclasses.dataclass
class SourceScan:
    """What a data folder holds for one dataset."""

    sources: list[SourceFile]
    excluded_missing: list[str]  # on the official missing-skeleton list
    other_dataset: int  # valid NTU names outside this dataset (e.g. NTU120-only samples for ntu60)
    unrecognised: list[str]  # .skeleton files whose name is not SsssCcccPpppRrrrAaaa


class NTUTask(Task):
    """Shared logic of NTU60 and NTU120; subclasses only set `config`."""

    config: ClassVar[TaskConfig]
    preprocess_choices = PREPROCESSINGS

    def __init__(self, encoder: str | None = None, preprocess: str | None = None):
        if encoder is not None and encoder != self.config.extra["encoder"]:
            self.config = _with_encoder(self.config, encoder)
        if preprocess is not None and preprocess != self.preprocess:
            self.check_preprocess(preprocess)
            self.config = dataclasses.replace(
                self.config, recipe=dataclasses.replace(self.config.recipe, preprocess=preprocess)
            )
        _validate_extra(self.config)

    def _preprocessed(self, preprocess: str) -> "NTUTask":
        return type(self)(encoder=self.config.extra["encoder"], preprocess=preprocess)

    # -- knobs from the YAML `recipe:` and `extra:` blocks -----------------------------------
    @property
    def preprocess(self) -> str:
        return self.config.recipe.preprocess

    @property
    def cache_spec(self) -> CacheSpec:
        extra = self.config.extra
        frames = int(extra["frames"]) if self.preprocess == "suite" else MAX_FRAMES
        return CacheSpec(frames=frames, max_bodies=int(extra["max_bodies"]), dataset=self.name,
                         preprocess=self.preprocess)

    def encoder(self) -> SkeletonEncoder:
        extra = self.config.extra
        return SkeletonEncoder(extra["encoder"], self.config.input_shape[1], int(extra["joints_per_body"]))

    # -- data --------------------------------------------------------------------------------
    def is_available(self, data_root=None) -> bool:
        data_dir = self.data_dir(data_root)
        return data_dir.is_dir() and any(True for _ in _skeleton_files(data_dir))

    def scan_sources(self, data_dir: Path) -> SourceScan:
        """The dataset's .skeleton files under `data_dir` (cheap: names and stat only)."""
        missing = self.missing_names(data_dir)
        scan = SourceScan([], [], 0, [])
        seen: dict[str, Path] = {}
        for path in _skeleton_files(data_dir):
            name = path.name[: -len(SUFFIX)]
            try:
                sample = parse_sample_name(name)
            except ValueError:
                scan.unrecognised.append(str(path))
                continue
            if not in_dataset(sample, self.name):
                scan.other_dataset += 1
                continue
            if name in seen:
                raise CorruptDataError(
                    f"task {self.name!r}: sample {name} is in {data_dir} twice ({seen[name]} and {path}); "
                    "remove one copy"
                )
            seen[name] = path
            if name in missing:
                scan.excluded_missing.append(name)
                continue
            stat = path.stat()
            scan.sources.append(
                SourceFile(name, path, path.relative_to(data_dir).as_posix(), stat.st_size, stat.st_mtime_ns,
                           sample.label)
            )
        return scan

    def missing_names(self, data_dir: Path) -> frozenset[str]:
        """The official missing-skeleton names: the bundled copy plus an official list file, if the
        user keeps one in the data folder."""
        names = bundled_missing_names(self.name)
        user_list = data_dir / MISSING_LIST_NAMES[self.name]
        if user_list.is_file():
            names = names | frozenset(read_missing_list(user_list))
        return names

    def build_cache(self, data_root=None, *, workers: int | None = None) -> tuple[SkeletonCache, SourceScan]:
        """Preprocess every sample of the dataset once (both splits, every protocol)."""
        data_dir = self.data_dir(data_root)
        if not data_dir.is_dir():
            raise self.missing_data_error(data_root)
        scan = self.scan_sources(data_dir)
        self._report_scan(scan, data_dir)
        if not scan.sources:
            detail = f"no {self.name} {SUFFIX} files in {data_dir} or its subfolders"
            if scan.excluded_missing:
                detail += f" (only {len(scan.excluded_missing)} on the official missing-skeleton list)"
            raise self.missing_data_error(data_root, detail)
        workers = workers or self.config.extra.get("preprocess_workers")
        cache = ensure_cache(scan.sources, data_dir / CACHE_DIR, self.cache_spec, workers=workers,
                             description=self.name)
        return cache, scan

    def build_real_dataset(self, split, *, data_root, protocol, time_steps, download, skip_corrupt, augment):
        if download and not self.data_dir(data_root).is_dir():
            raise self.missing_data_error(
                data_root, "NTU RGB+D cannot be downloaded automatically: its licence needs a request form"
            )
        cache, scan = self.build_cache(data_root)
        data_dir = self.data_dir(data_root)
        names, rows, labels, corrupt = [], [], [], []
        for row, sample in enumerate(cache.samples):
            if is_train(parse_sample_name(sample["name"]), self.name, protocol) != (split == "train"):
                continue
            if sample["error"] is not None:
                corrupt.append(sample)
                continue
            names.append(sample["name"])
            rows.append(row)
            labels.append(sample["label"])
        where = f"task {self.name!r} ({protocol}, {split} split)"
        check_corrupt(where, [s["error"] for s in corrupt], skip_corrupt=skip_corrupt, names=[s["name"] for s in corrupt])
        if not rows:
            raise DataNotFoundError(
                f"{where} is empty: none of the {len(cache.samples)} samples found under {data_dir} belongs "
                f"to it{' (after skipping corrupt files)' if corrupt else ''}; the {protocol} protocol "
                f"needs files of both splits (see tasks/ntu/splits.py)"
            )
        log.info("%s: %d samples (%s preprocessing)", where, len(rows), self.preprocess)
        extra = self.config.extra
        ctrgcn = self.preprocess == "ctrgcn"
        return NTUSkeletonDataset(
            clips_path=cache.clips_path,
            rows=np.asarray(rows),
            labels=np.asarray(labels),
            names=names,
            encoder=self.encoder(),
            time_steps=time_steps,
            augment=self._augmentation() if augment else None,
            frames=cache.frames()[rows] if ctrgcn else None,
            window=int(extra["frames"]) if ctrgcn else None,
            skipped_names=[s["name"] for s in corrupt],
            excluded_missing=sum(
                is_train(parse_sample_name(n), self.name, protocol) == (split == "train")
                for n in scan.excluded_missing
            ),
        )

    def _augmentation(self):
        if self.preprocess == "ctrgcn":
            return random_rotation
        extra = self.config.extra
        return functools.partial(augment_clip, max_angle=float(extra["augment_max_angle"]),
                                 scale=float(extra["augment_scale"]))

    def _report_scan(self, scan: SourceScan, data_dir: Path) -> None:
        if scan.excluded_missing:
            log.info("%s: excluded %d sample(s) on the official missing-skeleton list", self.name,
                     len(scan.excluded_missing))
        if scan.other_dataset:
            log.info("%s: ignored %d sample(s) of the larger NTU RGB+D 120 in %s", self.name,
                     scan.other_dataset, data_dir)
        if scan.unrecognised:
            log.warning("%s: ignored %d %s file(s) whose name is not like S001C002P003R002A013: %s", self.name,
                        len(scan.unrecognised), SUFFIX, ", ".join(scan.unrecognised[:3]))


def _skeleton_files(data_dir: Path):
    """*.skeleton in `data_dir` and in its direct subfolders (not the suite's own cache)."""
    with os.scandir(data_dir) as entries:
        entries = sorted(entries, key=lambda e: e.name)
    for entry in entries:
        if entry.is_file() and entry.name.endswith(SUFFIX):
            yield Path(entry.path)
        elif entry.is_dir() and entry.name != CACHE_DIR and not entry.name.startswith("."):
            with os.scandir(entry.path) as inner:
                for child in sorted(inner, key=lambda e: e.name):
                    if child.is_file() and child.name.endswith(SUFFIX):
                        yield Path(child.path)


def _with_encoder(config: TaskConfig, encoder: str) -> TaskConfig:
    if encoder not in ENCODERS:
        raise PluginError(f"task {config.name!r}: encoder {encoder!r} is not one of {ENCODERS}")
    channels, _, width = config.input_shape
    frames_per_step = int(config.extra["frames"]) if encoder == "static" else int(config.extra["segment_frames"])
    return dataclasses.replace(
        config,
        input_shape=(channels, frames_per_step, width),
        sequence_input=encoder == "temporal",
        extra={**config.extra, "encoder": encoder},
    )


def _validate_extra(config: TaskConfig) -> None:
    """The YAML's input_shape / sequence_input must agree with its `extra:` skeleton layout."""
    extra = config.extra
    origin = f"task config {config.name}"
    required = ("encoder", "frames", "segment_frames", "max_bodies", "joints_per_body", "augment_max_angle",
                "augment_scale")
    absent = [k for k in required if k not in extra]
    if absent:
        raise PluginError(f"{origin}: extra is missing {absent}")
    encoder, bodies, per_body = extra["encoder"], int(extra["max_bodies"]), int(extra["joints_per_body"])
    expected_h = int(extra["segment_frames"]) if encoder == "temporal" else int(extra["frames"])
    expected = (COORDS, expected_h, bodies * per_body)
    problems = []
    if encoder not in ENCODERS:
        problems.append(f"extra.encoder {encoder!r} is not one of {ENCODERS}")
    if per_body < JOINTS:
        problems.append(f"extra.joints_per_body {per_body} < {JOINTS} joints")
    if tuple(config.input_shape) != expected:
        problems.append(f"input_shape {list(config.input_shape)} should be {list(expected)} for encoder {encoder!r}")
    if config.sequence_input != (encoder == "temporal"):
        problems.append(f"sequence_input must be {encoder == 'temporal'} for encoder {encoder!r}")
    preprocess = config.recipe.preprocess
    if preprocess not in PREPROCESSINGS:
        problems.append(f"recipe.preprocess {preprocess!r} is not one of {PREPROCESSINGS}")
    elif preprocess == "ctrgcn" and bodies != SLOTS:
        problems.append(f"extra.max_bodies {bodies}: the ctrgcn preprocessing has {SLOTS} body slots")
    if problems:
        raise PluginError(f"{origin}: " + "; ".join(problems))


class NTU60(NTUTask):
    config = TaskConfig.from_yaml(_HERE / "ntu60.yaml")


class NTU120(NTUTask):
    config = TaskConfig.from_yaml(_HERE / "ntu120.yaml")
