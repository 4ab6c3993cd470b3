"""Writes CIFAR-10/100 folders in the official python-pickle layout, for the task tests."""

import pickle
from pathlib import Path

import numpy as np


def _key(name: str, as_bytes: bool):
    return name.encode() if as_bytes else name


def write_cifar(root: Path, task: str, per_file: int = 6, as_bytes: bool = True, seed: int = 0) -> dict:
    """The CIFAR python layout with random pixels; returns {file name: (data, labels)}.

    `as_bytes` writes b'data' keys (Python 3 code following the CIFAR page); otherwise str keys,
    which is what the original Python 2 pickles give when read as latin-1.
    """
    rng = np.random.default_rng(seed)
    if task == "cifar10":
        folder, label_key, classes = root / "cifar10" / "cifar-10-batches-py", "labels", 10
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta_name, meta = "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    else:
        folder, label_key, classes = root / "cifar100" / "cifar-100-python", "fine_labels", 100
        names = ["train", "test"]
        meta_name = "meta"
        meta = {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"c{i}" for i in range(20)],
        }
    folder.mkdir(parents=True)
    written = {}
    for name in names:
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, classes, size=per_file)]
        entry = {"batch_label": f"{name} of the test", "data": data, label_key: labels}
        if task == "cifar100":
            entry["coarse_labels"] = [v // 5 for v in labels]
        with open(folder / name, "wb") as handle:
            pickle.dump({_key(k, as_bytes): v for k, v in entry.items()}, handle, protocol=2)
        written[name] = (data, labels)
    meta = {
        _key(k, as_bytes): [_key(v, as_bytes) for v in vs] if isinstance(vs, list) else vs for k, vs in meta.items()
    }
    with open(folder / meta_name, "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return written
