"""The torch Dataset over one split of an NTU skeleton cache: memory-mapped, no parsing per epoch."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from tasks.ntu_encode import SkeletonEncoder, augment_clip


class NTUSkeletonDataset(Dataset):
    """`(x, label)` pairs: x float32 `[T, 3, H, W]` (temporal encoder) or `[3, H, W]` (static),
    label an int in [0, classes).

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
        augment: dict | None = None,
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
        self.skipped_names = list(skipped_names)
        self.skipped = len(self.skipped_names)
        self.excluded_missing = excluded_missing
        self._clips = None  # opened lazily in each process; a memmap must not be pickled to workers

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, index: int):
        if self._clips is None:
            self._clips = np.load(self.clips_path, mmap_mode="r")
        clip = np.array(self._clips[self.rows[index]])  # copy out of the map
        if self.augment:
            clip = augment_clip(clip, **self.augment)
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
            f"skipped={self.skipped}, excluded_missing={self.excluded_missing})"
        )

