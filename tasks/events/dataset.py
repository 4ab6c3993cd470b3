"""The torch dataset over a finished frame cache: `(x [T, 2, H, W] float32, label int)` per sample."""

from __future__ import annotations

import zipfile

import numpy as np
import torch
from torch.utils.data import Dataset

from suite.errors import CorruptDataError
from tasks.events.augment import augment_event_frames
from tasks.events.frame_cache import FrameCache


class EventFramesDataset(Dataset):
    """Reads cached event frames; `augment=True` applies Spikformer's DVS training augmentation.

    `skipped` counts the corrupt source files left out (only with `skip_corrupt=True`) and
    `skipped_files` says which and why.
    """

    def __init__(self, cache: FrameCache, *, time_steps: int, augment: bool, name: str) -> None:
        self.directory = cache.directory
        self.files = list(cache.files)
        self.targets = list(cache.labels)
        self.time_steps = time_steps
        self.augment = augment
        self.name = name
        self.skipped_files = list(cache.skipped)
        self.skipped = len(self.skipped_files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.directory / self.files[index]
        try:
            with np.load(path, allow_pickle=False) as archive:
                counts = archive["frames"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise CorruptDataError(
                f"{path}: cached frames cannot be read ({err}); delete {self.directory} to rebuild the cache"
            ) from err
        if counts.shape[0] != self.time_steps:
            raise CorruptDataError(f"{path}: holds {counts.shape[0]} frames, expected {self.time_steps}; "
                                   f"delete {self.directory} to rebuild the cache")
        frames = torch.from_numpy(counts.astype(np.float32))
        if self.augment:
            frames = augment_event_frames(frames)
        return frames, self.targets[index]

    def __repr__(self) -> str:
        return (f"EventFramesDataset({self.name}, {len(self)} samples, T={self.time_steps}, "
                f"augment={self.augment}, skipped={self.skipped})")


def build_frames_dataset(
    name: str,
    data_dir,
    layout: str,
    split: str,
    items,
    *,
    time_steps: int,
    split_by: str,
    sensor_size: tuple[int, int],
    skip_corrupt: bool,
    augment: bool,
) -> EventFramesDataset:
    """Build (or reuse) the frame cache of one split and wrap it as a dataset."""
    from tasks.events.frame_cache import build_or_load, cache_directory

    cache = build_or_load(
        cache_directory(data_dir, layout, split, time_steps, split_by),
        items,
        root=data_dir,
        time_steps=time_steps,
        split_by=split_by,
        sensor_size=sensor_size,
        skip_corrupt=skip_corrupt,
        description=f"{name} {split}",
    )
    return EventFramesDataset(cache, time_steps=time_steps, augment=augment, name=f"{name} {split}")
