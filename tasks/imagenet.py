"""ImageNet-1k (ILSVRC 2012) in torchvision's unpacked layout.

`<data root>/imagenet/{train,val}/<wnid>/*.JPEG`, plus torchvision's optional `meta.bin` (wnid ->
class names). Each split is a torchvision ImageFolder, but both splits index classes the same
way: by the sorted class folders of train/ (the convention of torchvision and timm). A val folder
that train/ does not have would otherwise shift every label silently, so it is an error.

ImageNet needs a registration and a manual download; nothing here downloads it.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

import torchvision.datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from suite.errors import CorruptDataError
from suite.task import Task, TaskConfig
from tasks.transforms import build_image_transform

log = logging.getLogger(__name__)

_HERE = resources.files("tasks")  # the configs ship inside the package
_SPLIT_FOLDERS = {"train": "train", "eval": "val"}
META_FILE = "meta.bin"


class ImageNetFolder(tvd.ImageFolder):
    """An ImageFolder over one split whose class indices are fixed by the caller (train's folders).

    A file that cannot be decoded raises CorruptDataError naming it, or with `skip_corrupt` is
    replaced by the next readable sample (logged), so one bad JPEG does not end a long run.
    """

    synthetic = False

    def __init__(self, split_dir: Path, classes: list[str], transform, skip_corrupt: bool):
        self._fixed_classes = classes
        self.skip_corrupt = skip_corrupt
        # allow_empty: a val split may lack some classes; their indices still come from train/.
        super().__init__(str(split_dir), transform=transform, allow_empty=True)

    def find_classes(self, directory):
        return list(self._fixed_classes), {name: i for i, name in enumerate(self._fixed_classes)}

    def __getitem__(self, index: int):
        for attempt in range(len(self.samples)):
            position = (index + attempt) % len(self.samples)
            try:
                return super().__getitem__(position)
            except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
                path = self.samples[position][0]
                if not self.skip_corrupt:
                    raise CorruptDataError(
                        f"task 'imagenet': {path} cannot be decoded as an image ({err}); replace the file, "
                        "or pass --skip-corrupt to use the next image instead"
                    ) from err
                log.warning("task imagenet: skipping unreadable image %s (%s)", path, err)
        raise CorruptDataError(f"task 'imagenet': no image under {self.root} can be decoded")


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())


def _loose_images(split_dir: Path) -> int:
    return sum(1 for e in os.scandir(split_dir) if e.is_file() and has_file_allowed_extension(e.name, IMG_EXTENSIONS))


class ImageNet(Task):
    config = TaskConfig.from_yaml(_HERE / "imagenet.yaml")

    def is_available(self, data_root=None) -> bool:
        root = self.data_dir(data_root)
        return all((root / folder).is_dir() for folder in _SPLIT_FOLDERS.values())

    def class_names(self, data_root=None) -> dict[str, tuple[str, ...]] | None:
        """wnid -> names from torchvision's meta.bin, or None when the file is absent."""
        path = self.data_dir(data_root) / META_FILE
        if not path.is_file():
            return None
        try:
            wnid_to_names, _ = tvd.imagenet.load_meta_file(str(path.parent), META_FILE)
        except Exception as err:  # torch.load(weights_only=True) refuses anything but plain containers
            raise CorruptDataError(
                f"task 'imagenet': {path} cannot be read ({type(err).__name__}: {err}); it should be the "
                "meta.bin that torchvision.datasets.ImageNet writes from the devkit; delete it to go without names"
            ) from err
        return {
            wnid: tuple(names) if isinstance(names, (tuple, list)) else (names,)
            for wnid, names in wnid_to_names.items()
        }

    def _split_classes(self, data_root: Path, folder: str) -> list[str]:
        split_dir = self.data_dir(data_root) / folder
        classes = _class_folders(split_dir)
        if not classes:
            loose = _loose_images(split_dir)
            detail = (
                f"{folder}/ holds {loose} images directly instead of <wnid>/ class folders: sort them into "
                "class folders (torchvision.datasets.ImageNet does this from the devkit's ground truth)"
                if loose
                else f"{folder}/ has no class folders"
            )
            raise self.missing_data_error(data_root, detail)
        return classes

    def _reference_classes(self, data_root: Path, split_folder: str, found: list[str]) -> list[str]:
        """The class folders that fix label indices: train/'s, or the split's own without train/."""
        if split_folder == "train":
            return found
        if (self.data_dir(data_root) / "train").is_dir():
            return self._split_classes(data_root, "train")
        log.warning(
            "task imagenet: no train/ under %s; class indices follow the sorted folders of %s/",
            self.data_dir(data_root),
            split_folder,
        )
        return found

    def _check_classes(self, root: Path, split_folder: str, found: list[str], reference: list[str], names) -> None:
        if len(reference) > self.num_classes:
            raise CorruptDataError(
                f"task 'imagenet': {root / 'train'} has {len(reference)} class folders, more than ImageNet's "
                f"{self.num_classes}; remove the extra folders"
            )
        if len(reference) < self.num_classes:
            log.warning(
                "task imagenet: %d class folders under %s (ImageNet has %d); labels index the folders found",
                len(reference),
                root,
                self.num_classes,
            )
        unknown = sorted(set(found) - set(reference))
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise CorruptDataError(
                f"task 'imagenet': {root / split_folder} has class folders that train/ does not have: {shown}; "
                f"every {split_folder}/ folder must be one of train/'s wnid folders (e.g. {reference[0]})"
            )
        if names is not None:
            unnamed = sorted(set(found) - set(names))
            if unnamed:
                raise CorruptDataError(
                    f"task 'imagenet': {root / split_folder} has folders that are not ImageNet wnids listed in "
                    f"{root / META_FILE}: {', '.join(unnamed[:5])}; rename them to their wnid (e.g. n01440764)"
                )
        absent = len(set(reference) - set(found))
        if absent:
            log.warning("task imagenet: %s/ lacks %d of the %d classes", split_folder, absent, len(reference))

    def build_real_dataset(self, split, *, data_root, protocol, time_steps, download, skip_corrupt, augment):
        root = self.data_dir(data_root)
        split_folder = _SPLIT_FOLDERS[split]
        if not (root / split_folder).is_dir():
            raise self.missing_data_error(
                data_root, f"no {split_folder}/ folder" + ("; --download cannot fetch ImageNet" if download else "")
            )
        if download:
            log.info("task imagenet: --download ignored, ImageNet is a manual download (found %s)", root)
        names = self.class_names(data_root)
        found = self._split_classes(data_root, split_folder)
        reference = self._reference_classes(data_root, split_folder, found)
        self._check_classes(root, split_folder, found, reference, names)
        dataset = ImageNetFolder(
            root / split_folder,
            reference,
            transform=build_image_transform(self.config, train=augment),
            skip_corrupt=skip_corrupt,
        )
        if not dataset.samples:
            raise self.missing_data_error(data_root, f"no images in the class folders of {split_folder}/")
        if split == "train":
            empty = sorted(set(reference) - {reference[target] for target in set(dataset.targets)})
            if empty:
                raise self.missing_data_error(data_root, f"train/ class folders without images: {', '.join(empty[:5])}")
        dataset.class_names = [names[wnid][0] if names and wnid in names else wnid for wnid in reference]
        log.info("task imagenet: %d %s images in %d classes from %s", len(dataset), split, len(reference), root)
        return dataset
