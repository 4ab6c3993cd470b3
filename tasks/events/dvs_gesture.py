"""DVS128 Gesture: the original IBM release (AEDAT 3.1 + labels CSV) or tonic's preprocessed copy.

The layout is detected from what is on disk (see the `layout` text in dvs128_gesture.yaml). With the
original release every labelled segment of a trial is one sample, and trials_to_train.txt /
trials_to_test.txt decide the split (98 / 24 trials). tonic's copy already holds one `.npy` per
(trial, class) with columns x, y, p, t in milliseconds.
"""

from __future__ import annotations

import csv
import logging
from importlib import resources
from pathlib import Path

import numpy as np

from suite.errors import CorruptDataError, DataNotFoundError
from suite.task import TaskConfig
from tasks.events.aedat import read_aedat31_polarity
from tasks.events.frame_cache import SourceItem
from tasks.events.stream import make_events
from tasks.events.task import EventTask

log = logging.getLogger(__name__)

CONFIG = TaskConfig.from_yaml(resources.files("tasks.events") / "dvs128_gesture.yaml")

NUM_CLASSES = CONFIG.num_classes
IBM_SUBFOLDER = "DvsGesture"  # what DvsGesture.tar.gz extracts to
TONIC_SUBFOLDER = "DVSGesture"  # where tonic.datasets.DVSGesture(save_to=...) puts its copy
TRIAL_LISTS = {"train": "trials_to_train.txt", "eval": "trials_to_test.txt"}
TONIC_SPLITS = {"train": "ibmGestureTrain", "eval": "ibmGestureTest"}
LABELS_HEADER = ["class", "startTime_usec", "endTime_usec"]


def read_gesture_labels(path: str | Path) -> np.ndarray:
    """A trial's labels CSV as an int64 array of rows (class 1-11, start_us, end_us)."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if any(cell.strip() for cell in row)]
    if not rows or [cell.strip() for cell in rows[0][1]] != LABELS_HEADER:
        found = ",".join(rows[0][1]) if rows else "an empty file"
        raise CorruptDataError(f"{path}: expected the header {','.join(LABELS_HEADER)}, found {found!r}")
    segments = []
    for line_no, row in rows[1:]:
        try:
            cls, start, end = (int(cell) for cell in row)
        except ValueError:
            raise CorruptDataError(f"{path}: line {line_no} is {','.join(row)!r}, expected three integers") from None
        if not 1 <= cls <= NUM_CLASSES:
            raise CorruptDataError(f"{path}: line {line_no} has class {cls}, expected 1-{NUM_CLASSES}")
        if start >= end:
            raise CorruptDataError(f"{path}: line {line_no} has start {start} >= end {end}")
        segments.append((cls, start, end))
    if not segments:
        raise CorruptDataError(f"{path}: has a header but no labelled segments")
    return np.asarray(segments, dtype=np.int64)


def read_trial_list(path: Path) -> list[str]:
    """Recording file names listed one per line (blank lines ignored)."""
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    bad = [name for name in names if not name.endswith(".aedat") or "/" in name or "\\" in name]
    if bad:
        raise CorruptDataError(f"{path}: expected recording names like user01_fluorescent.aedat, found {bad[0]!r}")
    return names


def read_ibm_trial(aedat_path: str, labels_path: str) -> list[tuple[int, np.ndarray]]:
    """One (label 0-10, events) sample per labelled segment: events with start <= t < end."""
    events = read_aedat31_polarity(aedat_path)
    samples = []
    for row, (cls, start, end) in enumerate(read_gesture_labels(labels_path), start=1):
        segment = events[(events["t"] >= start) & (events["t"] < end)]
        if segment.size == 0:
            span = f"{events['t'].min()}-{events['t'].max()} us" if events.size else "no events at all"
            raise CorruptDataError(
                f"{labels_path}: segment {row} (class {cls}, {start}-{end} us) selects no events of "
                f"{aedat_path} (recording spans {span}): the labels do not match the recording"
            )
        samples.append((int(cls) - 1, segment))
    return samples


def read_tonic_sample(npy_path: str) -> list[tuple[int, np.ndarray]]:
    """tonic's `<label>.npy`: an (N, 4) array of x, y, p, t in milliseconds."""
    path = Path(npy_path)
    try:
        label = int(path.stem)
    except ValueError:
        label = -1
    if not 0 <= label < NUM_CLASSES:
        raise CorruptDataError(f"{path}: tonic's files are named <label>.npy with label 0-{NUM_CLASSES - 1}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CorruptDataError(f"{path}: not a readable .npy array: {err}") from err
    if array.ndim != 2 or array.shape[1] != 4:
        raise CorruptDataError(f"{path}: expected an (N, 4) array of x, y, p, t(ms), found shape {array.shape}")
    t_ms = array[:, 3]
    t_us = np.rint(t_ms * 1000).astype(np.int64) if t_ms.dtype.kind == "f" else t_ms.astype(np.int64) * 1000
    return [(label, make_events(t=t_us, x=array[:, 0], y=array[:, 1], p=array[:, 2]))]


def find_layout(data_dir: Path) -> tuple[str, Path] | None:
    """("ibm", folder) or ("tonic", folder) for the first layout found, else None."""
    for folder in (data_dir, data_dir / IBM_SUBFOLDER):
        if (folder / TRIAL_LISTS["train"]).is_file() or (folder / TRIAL_LISTS["eval"]).is_file():
            return "ibm", folder
    for folder in (data_dir, data_dir / TONIC_SUBFOLDER):
        if any((folder / name).is_dir() for name in TONIC_SPLITS.values()):
            return "tonic", folder
    return None


class DVSGesture(EventTask):
    config = CONFIG

    def find_layout(self, data_dir: Path) -> tuple[str, Path] | None:
        return find_layout(data_dir)

    def missing_data_hint(self, data_dir: Path) -> str:
        return "neither the original release nor tonic's copy is there"

    def source_items(self, layout: str, folder: Path, split: str) -> list[SourceItem]:
        if layout == "ibm":
            return self._ibm_items(folder, split)
        split_dir = folder / TONIC_SPLITS[split]
        if not split_dir.is_dir():
            raise DataNotFoundError(f"task {self.name!r}: tonic's layout found in {folder} but {split_dir} is missing")
        return [
            SourceItem(key=f"{path.parent.name}_{path.stem}", paths=(str(path),), read=read_tonic_sample)
            for path in sorted(split_dir.glob("*/*.npy"))
        ]

    def _ibm_items(self, folder: Path, split: str) -> list[SourceItem]:
        trials_path = folder / TRIAL_LISTS[split]
        if not trials_path.is_file():
            raise DataNotFoundError(f"task {self.name!r}: {trials_path} is missing (the original release has both "
                                    f"{TRIAL_LISTS['train']} and {TRIAL_LISTS['eval']})")
        items = []
        for name in read_trial_list(trials_path):
            recording = folder / name
            labels = folder / f"{recording.stem}_labels.csv"
            for needed in (recording, labels):
                if not needed.is_file():
                    raise DataNotFoundError(f"task {self.name!r}: {trials_path} lists {name} but {needed} is missing")
            items.append(SourceItem(key=recording.stem, paths=(str(recording), str(labels)), read=read_ibm_trial))
        return items

    def fetch(self, data_dir: Path) -> None:
        """Fetch tonic's preprocessed copy (both splits) into `data_dir/DVSGesture/`."""
        import tonic

        log.info("downloading DVS128 Gesture (tonic's preprocessed copy) into %s", data_dir)
        for train in (True, False):
            tonic.datasets.DVSGesture(save_to=str(data_dir), train=train)
