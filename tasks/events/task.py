"""The shared base of event-camera tasks: find the layout on disk, list its recordings, cache frames.

A subclass says how its dataset looks on disk (`find_layout`), which recordings make a split
(`source_items`) and how to download it (`fetch`); binning the events into frames, the frame cache
and the torch dataset are the same for every event camera and live here once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from suite.errors import DataNotFoundError
from suite.task import Task
from tasks.events.frame_cache import SourceItem

log = logging.getLogger(__name__)


class EventTask(Task):
    """A task whose samples are event recordings binned into `[T, 2, H, W]` frame counts.

    Config extras read here: `split_by` ("number" of events or "time", default "number") and
    `sensor_size` ((H, W), default the config's input height and width).
    """

    def find_layout(self, data_dir: Path) -> tuple[str, Path] | None:
        """(layout name, folder holding it), or None when no known layout is under `data_dir`."""
        raise NotImplementedError(f"task {self.name!r} does not implement find_layout")

    def source_items(self, layout: str, folder: Path, split: str) -> list[SourceItem]:
        """The recordings of one split, each with the reader that turns it into labelled events."""
        raise NotImplementedError(f"task {self.name!r} does not implement source_items")

    def fetch(self, data_dir: Path) -> None:
        """Download the dataset into `data_dir` (called by `download`, which reports any failure)."""
        raise NotImplementedError("this task has no download; place the data there by hand")

    def download(self, data_dir: Path) -> None:
        try:
            self.fetch(data_dir)
        except Exception as err:  # network and archive errors come in many types
            raise DataNotFoundError(f"task {self.name!r}: download into {data_dir} failed: {err}") from err

    def missing_data_hint(self, data_dir: Path) -> str:
        """What was (not) found in `data_dir`, for the missing-data error."""
        return ""

    def is_available(self, data_root=None) -> bool:
        try:
            return self.find_layout(self.data_dir(data_root)) is not None
        except DataNotFoundError:  # a malformed layout is there but unusable
            return False

    def build_real_dataset(self, split, *, data_root, protocol, time_steps, download, skip_corrupt, augment):
        from tasks.events.dataset import build_frames_dataset

        data_dir = self.data_dir(data_root)
        found = self.find_layout(data_dir)
        if found is None and download:
            self.download(data_dir)
            found = self.find_layout(data_dir)
        if found is None:
            raise self.missing_data_error(data_root, self.missing_data_hint(data_dir))
        layout, folder = found
        items = self.source_items(layout, folder, split)
        if not items:
            raise DataNotFoundError(f"task {self.name!r}: the {split} split is empty: no recordings found for it "
                                    f"in {folder} ({layout} layout)")
        log.info("%s %s: %s layout in %s, %d source items", self.name, split, layout, folder, len(items))
        return build_frames_dataset(
            self.name, data_dir, layout, split, items,
            time_steps=time_steps,
            split_by=self.config.extra.get("split_by", "number"),
            sensor_size=tuple(self.config.extra.get("sensor_size", self.config.input_shape[1:])),
            skip_corrupt=skip_corrupt,
            augment=augment,
        )
