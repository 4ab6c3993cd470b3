"""CIFAR10-DVS: class folders of AER-DAT 2.0 recordings (original) or AEDAT 4.0 files (tonic's copy).

There is no official split: like Spikformer, the first ceil(90%) of each class's recordings (file
names sorted lexicographically) train and the rest evaluate; see cifar10_dvs.yaml.
"""

from __future__ import annotations

import logging
import math
from importlib import resources
from pathlib import Path

import numpy as np

from suite.errors import DataNotFoundError
from suite.task import TaskConfig
from tasks.events.aedat import read_aedat4_events, read_cifar10_dvs_aedat
from tasks.events.frame_cache import CACHE_PREFIX, SourceItem
from tasks.events.task import EventTask

log = logging.getLogger(__name__)

CONFIG = TaskConfig.from_yaml(resources.files("tasks.events") / "cifar10_dvs.yaml")

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TONIC_SUBFOLDER = "CIFAR10DVS"  # where tonic.datasets.CIFAR10DVS(save_to=...) puts its copy
LAYOUT_SUFFIX = {"original": ".aedat", "tonic": ".aedat4"}


def read_original_sample(path: str) -> list[tuple[int, np.ndarray]]:
    return [(CLASSES.index(Path(path).parent.name), read_cifar10_dvs_aedat(path))]


def read_tonic_sample(path: str) -> list[tuple[int, np.ndarray]]:
    return [(CLASSES.index(Path(path).parent.name), read_aedat4_events(path))]


READERS = {"original": read_original_sample, "tonic": read_tonic_sample}


def _is_ignorable(folder: Path) -> bool:
    """Folders that are never class folders: ours (frame caches), hidden ones, archive debris."""
    return folder.name.startswith((".", "__", CACHE_PREFIX))


def find_layout(data_dir: Path) -> tuple[str, Path] | None:
    """("original" | "tonic", folder holding the class folders), or None when no class folder exists.

    A class folder with the wrong name, or a missing one, is an error, not a layout miss.
    """
    for folder in (data_dir, data_dir / TONIC_SUBFOLDER):
        if not folder.is_dir():
            continue
        subfolders = [d for d in folder.iterdir() if d.is_dir() and not _is_ignorable(d)]
        if not any(d.name in CLASSES for d in subfolders):
            continue
        unknown = sorted(d.name for d in subfolders if d.name not in CLASSES and d.name != TONIC_SUBFOLDER)
        if unknown:
            raise DataNotFoundError(
                f"task 'cifar10-dvs': {folder} has folder(s) {', '.join(unknown)} that are not class folders; "
                f"class folders must be named exactly {', '.join(CLASSES)}"
            )
        missing = [name for name in CLASSES if not (folder / name).is_dir()]
        if missing:
            raise DataNotFoundError(
                f"task 'cifar10-dvs': {folder} lacks the class folder(s) {', '.join(missing)} "
                f"(found {', '.join(sorted(d.name for d in subfolders))}); extract all ten class archives"
            )
        has_original = any(next((folder / name).glob("*.aedat"), None) for name in CLASSES)
        return ("original" if has_original else "tonic"), folder
    return None


def split_files(files: list[Path], split: str, train_ratio: float) -> list[Path]:
    """The first ceil(train_ratio * n) of the name-sorted files train; the rest evaluate."""
    ordered = sorted(files, key=lambda p: p.name)
    cut = math.ceil(len(ordered) * train_ratio)
    return ordered[:cut] if split == "train" else ordered[cut:]


class Cifar10DVS(EventTask):
    config = CONFIG

    def find_layout(self, data_dir: Path) -> tuple[str, Path] | None:
        return find_layout(data_dir)

    def missing_data_hint(self, data_dir: Path) -> str:
        archives = sorted(p.name for p in data_dir.glob("*.zip")) if data_dir.is_dir() else []
        return f"found {', '.join(archives)}: extract them" if archives else "no class folders there"

    def source_items(self, layout: str, folder: Path, split: str) -> list[SourceItem]:
        suffix = LAYOUT_SUFFIX[layout]
        train_ratio = float(self.config.extra.get("train_ratio", 0.9))
        items = []
        for name in CLASSES:
            files = [p for p in (folder / name).iterdir() if p.suffix == suffix and p.is_file()]
            if not files:
                raise DataNotFoundError(f"task {self.name!r}: class folder {folder / name} has no {suffix} files "
                                        f"({layout} layout)")
            items.extend(
                SourceItem(key=f"{name}_{path.stem}", paths=(str(path),), read=READERS[layout])
                for path in split_files(files, split, train_ratio)
            )
        return items

    def fetch(self, data_dir: Path) -> None:
        """Fetch tonic's AEDAT 4.0 conversion into `data_dir/CIFAR10DVS/`."""
        import tonic

        log.info("downloading CIFAR10-DVS (tonic's AEDAT 4.0 conversion) into %s", data_dir)
        tonic.datasets.CIFAR10DVS(save_to=str(data_dir))
