"""CIFAR-10 and CIFAR-100 in torchvision's python-pickle layout.

`<data root>/cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` and
`<data root>/cifar100/cifar-100-python/{train, test, meta}`. The datasets are torchvision's CIFAR
classes (file lists, checksums, download, `__getitem__`), with one change: the files are read one
by one and checked, so a truncated or foreign file raises a CorruptDataError naming it, where
torchvision raises one generic "not found or corrupted" for any md5 difference. A file whose md5
differs from the official release but reads correctly (a re-export) is used and logged.

Pickle keys may be the original Python 2 strings ('data', 'labels' when read as latin-1) or
bytes (b'data', as written by Python 3 code following the CIFAR page). The pickles are loaded
with `pickle` as torchvision does: they are the dataset's official format, read only from the
user's own data root.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from importlib import resources
from pathlib import Path
from typing import ClassVar

import numpy as np
import torchvision.datasets as tvd
from torchvision.datasets.utils import download_and_extract_archive
from torchvision.datasets.vision import VisionDataset

from suite.errors import CorruptDataError, DataNotFoundError
from suite.task import Task, TaskConfig
from tasks.transforms import build_image_transform

log = logging.getLogger(__name__)

_HERE = resources.files("tasks")  # the configs ship inside the package
_PIXELS = 3 * 32 * 32


class _UnreadableFile(Exception):
    """A CIFAR file that exists but is not what it should be; the message says why."""


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
    except Exception as err:  # truncated or foreign files fail in many ways (EOF, opcode, import...)
        raise _UnreadableFile(
            f"cannot be unpickled ({type(err).__name__}: {err}): it is truncated or not a CIFAR python pickle"
        ) from err
    if not isinstance(entry, dict):
        raise _UnreadableFile(f"holds a {type(entry).__name__} where a CIFAR pickle holds a dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}


def _field(entry: dict, key: str):
    if key not in entry:
        raise _UnreadableFile(f"has no {key!r} entry (it has {sorted(map(str, entry))})")
    return entry[key]


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_pickle(path)
    data = np.asarray(_field(entry, "data"))
    labels = np.asarray(_field(entry, label_key))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise _UnreadableFile(f"has 'data' of {data.dtype} {data.shape}, expected uint8 of shape [N, {_PIXELS}]")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise _UnreadableFile(f"has {data.shape[0]} images but {label_key!r} of {labels.dtype} {labels.shape}")
    if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
        raise _UnreadableFile(f"has {label_key!r} in [{labels.min()}, {labels.max()}], expected 0..{num_classes - 1}")
    return data, labels


def _read_class_names(path: Path, key: str, num_classes: int) -> list[str]:
    names = _field(_read_pickle(path), key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise _UnreadableFile(f"has {key!r} that is not a list of {num_classes} class names")
    return [name.decode("latin1") if isinstance(name, bytes) else str(name) for name in names]


class _CheckedCifar:
    """Loading for torchvision's CIFAR classes that names the file at fault (see module doc)."""

    label_key: ClassVar[str]

    def __init__(self, root: Path, train: bool, transform, task_name: str, num_classes: int):
        VisionDataset.__init__(self, str(root), transform=transform)
        self.train = train
        folder = Path(root) / self.base_folder
        official = dict(self.train_list + self.test_list)
        official[self.meta["filename"]] = self.meta["md5"]
        unofficial: list[str] = []

        def load(name, read, *args):
            path = folder / name
            try:
                value = read(path, *args)
            except _UnreadableFile as problem:
                matches = "matches" if _md5(path) == official[name] else "differs from"
                raise CorruptDataError(
                    f"task {task_name!r}: {path} {problem}; its md5 {matches} the official release's: "
                    f"delete it and extract {self.filename} again (or re-run with --download)"
                ) from problem
            if _md5(path) != official[name]:
                unofficial.append(name)
            return value

        batches = [load(name, _read_batch, self.label_key, num_classes) for name, _ in self._split_files()]
        self.data = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = np.concatenate([labels for _, labels in batches]).astype(np.int64).tolist()
        self.classes = load(self.meta["filename"], _read_class_names, self.meta["key"], num_classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        if unofficial:  # a re-export can be legitimate; say so once rather than refuse
            log.warning(
                "task %s: %s in %s differ from the official release (md5); using them as found",
                task_name,
                ", ".join(unofficial),
                folder,
            )

    def _split_files(self) -> list:
        return self.train_list if self.train else self.test_list


class _Cifar10Files(_CheckedCifar, tvd.CIFAR10):
    label_key = "labels"
    synthetic = False


class _Cifar100Files(_CheckedCifar, tvd.CIFAR100):
    label_key = "fine_labels"
    synthetic = False


class CifarTask(Task):
    """Shared logic of CIFAR-10 and CIFAR-100; subclasses pick torchvision's class."""

    files_class: ClassVar[type]

    def _folder(self, data_root) -> Path:
        return self.data_dir(data_root) / self.files_class.base_folder

    def _file_names(self, split: str | None = None) -> list[str]:
        cls = self.files_class
        lists = {"train": cls.train_list, "eval": cls.test_list}
        chosen = lists[split] if split else cls.train_list + cls.test_list
        return [name for name, _ in chosen] + [cls.meta["filename"]]

    def is_available(self, data_root=None) -> bool:
        folder = self._folder(data_root)
        return all((folder / name).is_file() for name in self._file_names())

    def _download(self, data_root: Path) -> None:
        cls = self.files_class
        target = self.data_dir(data_root)
        target.mkdir(parents=True, exist_ok=True)
        log.info("task %s: downloading %s into %s", self.name, cls.url, target)
        try:
            download_and_extract_archive(cls.url, str(target), filename=cls.filename, md5=cls.tgz_md5)
        except Exception as err:  # network errors, bad archive, full disk: all end the same way
            raise DataNotFoundError(
                f"task {self.name!r}: download of {cls.url} into {target} failed ({type(err).__name__}: {err}); "
                f"download it by hand and extract it into {target}"
            ) from err

    def build_real_dataset(self, split, *, data_root, protocol, time_steps, download, skip_corrupt, augment):
        folder = self._folder(data_root)
        missing = [name for name in self._file_names(split) if not (folder / name).is_file()]
        if missing and download:
            self._download(data_root)
            missing = [name for name in self._file_names(split) if not (folder / name).is_file()]
        if missing:
            hint = (
                "the download did not provide them"
                if download
                else f"pass --download to fetch {self.files_class.filename}"
            )
            raise self.missing_data_error(data_root, f"missing {', '.join(missing)} in {folder.name}/; {hint}")
        dataset = self.files_class(
            self.data_dir(data_root),
            train=(split == "train"),
            transform=build_image_transform(self.config, train=augment),
            task_name=self.name,
            num_classes=self.num_classes,
        )
        log.info("task %s: %d %s images from %s", self.name, len(dataset), split, folder)
        return dataset


class Cifar10(CifarTask):
    config = TaskConfig.from_yaml(_HERE / "cifar10.yaml")
    files_class = _Cifar10Files


class Cifar100(CifarTask):
    config = TaskConfig.from_yaml(_HERE / "cifar100.yaml")
    files_class = _Cifar100Files
