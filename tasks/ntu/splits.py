"""NTU RGB+D sample names, the official evaluation protocols and the official missing-skeleton lists.

A sample name is `SsssCcccPpppRrrrAaaa`: setup, camera, performer (subject), replication, action.
NTU RGB+D 60 is setups 1-17 with actions 1-60; NTU RGB+D 120 adds setups 18-32 and actions 61-120.

Protocols (Shahroudy et al. CVPR 2016; Liu et al. TPAMI 2019):
- ntu60 xsub: train on the 20 subjects in NTU60_TRAIN_SUBJECTS, evaluate on the other 20;
- ntu60 xview: train on cameras 2 and 3, evaluate on camera 1;
- ntu120 xsub: train on the 53 subjects in NTU120_TRAIN_SUBJECTS, evaluate on the other 53;
- ntu120 xset: train on even setup IDs, evaluate on odd ones.
"""

from __future__ import annotations

import csv
import os
import re
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from suite.errors import CorruptDataError, UnknownNameError

NAME_PATTERN = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")

NTU60_TRAIN_SUBJECTS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
     89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
)
NTU60_TRAIN_CAMERAS = frozenset((2, 3))

DATASETS = {"ntu60": (17, 60), "ntu120": (32, 120)}  # name -> (last setup, number of actions)
PROTOCOLS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}

# The official lists (github.com/shahroudy/NTURGB-D, Matlab/NTU_RGBD*_samples_with_missing_skeletons.txt)
# start with prose lines; the NTU120 list contains the NTU60 one.
MISSING_LIST_NAMES = {
    "ntu60": "NTU_RGBD_samples_with_missing_skeletons.txt",
    "ntu120": "NTU_RGBD120_samples_with_missing_skeletons.txt",
}
_BUNDLED_MISSING = resources.files("tasks.ntu") / "missing_skeletons.csv"


class SampleName(NamedTuple):  # a NamedTuple: ~3x cheaper to build than a frozen dataclass
    setup: int
    camera: int
    subject: int
    replication: int
    action: int  # 1-based, as in the name

    @property
    def label(self) -> int:
        return self.action - 1


def parse_sample_name(name: str) -> SampleName:
    match = NAME_PATTERN.match(name)
    if not match:
        raise ValueError(f"{name!r} is not an NTU sample name like 'S001C002P003R002A013'")
    return SampleName(*map(int, match.groups()))


def in_dataset(sample: SampleName, dataset: str) -> bool:
    last_setup, actions = DATASETS[dataset]
    return 1 <= sample.setup <= last_setup and 1 <= sample.action <= actions


def is_train(sample: SampleName, dataset: str, protocol: str) -> bool:
    """Whether the sample is in the training split of `dataset`'s `protocol`."""
    if protocol not in PROTOCOLS.get(dataset, ()):
        raise UnknownNameError(
            f"dataset {dataset!r} has no protocol {protocol!r}; valid: {', '.join(PROTOCOLS.get(dataset, ()))}"
        )
    if protocol == "xsub":
        subjects = NTU60_TRAIN_SUBJECTS if dataset == "ntu60" else NTU120_TRAIN_SUBJECTS
        return sample.subject in subjects
    if protocol == "xview":
        return sample.camera in NTU60_TRAIN_CAMERAS
    return sample.setup % 2 == 0  # xset


def split_names(names, dataset: str, protocol: str, split: str) -> list[str]:
    """The names (kept in order) that fall into `split` ("train" or "eval")."""
    want_train = split == "train"
    return [n for n in names if is_train(parse_sample_name(n), dataset, protocol) == want_train]


def read_missing_list(path: str | os.PathLike) -> list[str]:
    """Names from an official missing-skeleton list: prose header lines, then one name per line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise CorruptDataError(f"{path}: cannot read the missing-skeleton list: {err}") from err
    names = [line.strip() for line in lines if NAME_PATTERN.match(line.strip())]
    if not names:
        raise CorruptDataError(f"{path}: no sample names (like S001C002P005R002A008) in this missing-skeleton list")
    return names


def bundled_missing_names(dataset: str) -> frozenset[str]:
    """The official missing-skeleton names for `dataset`, from the copy shipped with the suite."""
    with _BUNDLED_MISSING.open(newline="", encoding="utf-8") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    return frozenset(n for n in names if in_dataset(parse_sample_name(n), dataset))
