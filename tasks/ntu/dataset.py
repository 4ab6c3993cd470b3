"""The torch Dataset over one split of an NTU skeleton cache: memory-mapped, no parsing per epoch."""

from __future__ import annotations

from typing import Callable

import numpy as np
from torch.utils.data import Dataset

from tasks.ntu.ctrgcn import crop_resize
from tasks.ntu.encode import SkeletonEncoder


class NTUSkeletonDataset(Dataset):
    """`(x, label)` pairs: x float32 `[T, 3, H, W]` (temporal encoder) or `[3, H, W]` (static),
    label an int in [0, classes).

    With `window` set (the "ctrgcn" preprocessing), a cache row holds a whole sequence of `frames[i]`
    frames and each read crops and resizes it to `window` frames: a random crop when `augment` is
    set (training), the centre crop otherwise (`tasks.ntu.ctrgcn.crop_resize`). `augment` is a
    function of one clip `[frames, bodies, 25, 3]` (picklable, e.g. a functools.partial).

    Besides the samples it reports what was left out, never silently: `skipped` (corrupt files
    skipped under skip_corrupt, names in `skipped_names`) and `excluded_missing` (samples on the
    official missing-skeleton list that were found on disk and excluded by name).
    """

    def __init__(
        self,
        *,
        clips_path,
        rows: np.ndarray,
        labels: np.ndarray,
        names: list[str],
        encoder: SkeletonEncoder,
        time_steps: int,
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
        frames: np.ndarray | None = None,
        window: int | None = None,
        skipped_names: list[str] = (),
        excluded_missing: int = 0,
    ):
        self.clips_path = clips_path
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.names = list(names)
        self.encoder = encoder
        self.time_steps = time_steps
        self.augment = augment
        self.frames = None if frames is None else np.asarray(frames, dtype=np.int64)
        self.window = window
        if window is not None and (self.frames is None or self.frames.shape != self.rows.shape):
            raise ValueError("a dataset with a crop window needs the frame count of every row")
        self.skipped_names = list(skipped_names)
        self.skipped = len(self.skipped_names)
        self.excluded_missing = excluded_missing
        self._clips = None  # opened lazily in each process; a memmap must not be pickled to workers

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, index: int):
        if self._clips is None:
            self._clips = np.load(self.clips_path, mmap_mode="r")
        if self.window is None:
            clip = np.array(self._clips[self.rows[index]])  # copy out of the map
        else:
            sequence = self._clips[self.rows[index], : self.frames[index]]
            clip = crop_resize(sequence, self.window, train=self.augment is not None)
        if self.augment is not None:
            clip = self.augment(clip)
        return self.encoder(clip, self.time_steps), int(self.labels[index])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_clips"] = None
        return state

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __repr__(self) -> str:
        return (
            f"NTUSkeletonDataset({len(self)} samples, encoder={self.encoder.kind}, T={self.time_steps}, "
            f"window={self.window}, "
            f"skipped={self.skipped}, excluded_missing={self.excluded_missing})"
        )

