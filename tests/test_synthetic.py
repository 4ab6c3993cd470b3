"""Synthetic data: exact shapes, determinism across processes, modality-like values, learnability."""

import hashlib
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from suite.errors import UsageError
from suite.models import create_model
from suite.synthetic import SyntheticDataset
from suite.task_registry import get_task

SHAPES = {
    "image": (3, 32, 32),
    "event": (4, 2, 32, 32),
    "skeleton": (3, 32, 25),  # [C, frames, joints]
}


def _digest(dataset, indices) -> str:
    digest = hashlib.sha256()
    for i in indices:
        x, label = dataset[i]
        digest.update(x.numpy().tobytes())
        digest.update(str(label).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("modality", sorted(SHAPES))
def test_samples_have_the_exact_shape_dtype_and_balanced_labels(modality):
    ds = SyntheticDataset(modality, SHAPES[modality], num_classes=7, size=50, seed=3, class_seed=4)
    assert len(ds) == 50 and ds.synthetic is True
    x, label = ds[0]
    assert x.shape == SHAPES[modality] and x.dtype == torch.float32
    assert isinstance(label, int)
    labels = [ds[i][1] for i in range(50)]
    assert labels == ds.targets
    counts = torch.bincount(torch.tensor(labels), minlength=7)
    assert counts.min() == 7 and counts.max() == 8  # 50 samples over 7 classes
    assert torch.equal(ds[-1][0], ds[49][0])
    with pytest.raises(IndexError):
        ds[50]


@pytest.mark.parametrize("modality", sorted(SHAPES))
def test_same_seed_same_samples_other_seeds_differ(modality):
    shape = SHAPES[modality]
    a = SyntheticDataset(modality, shape, 5, 20, seed=1, class_seed=9)
    b = SyntheticDataset(modality, shape, 5, 20, seed=1, class_seed=9)
    assert _digest(a, range(20)) == _digest(b, range(20))
    assert torch.equal(a[7][0], a[7][0])  # re-reading an index does not advance any state
    other_noise = SyntheticDataset(modality, shape, 5, 20, seed=2, class_seed=9)
    other_classes = SyntheticDataset(modality, shape, 5, 20, seed=1, class_seed=10)
    assert not torch.equal(a[3][0], other_noise[3][0])
    assert not torch.equal(a[3][0], other_classes[3][0])
    assert not torch.equal(a[3][0], a[8][0])  # same class (3 and 8 mod 5), different sample


def test_samples_are_identical_in_another_process():
    ds = SyntheticDataset("event", SHAPES["event"], 10, 16, seed=5, class_seed=6)
    code = (
        "import hashlib;from suite.synthetic import SyntheticDataset as S\n"
        "d=S('event',(4,2,32,32),10,16,seed=5,class_seed=6);h=hashlib.sha256()\n"
        "for i in (0,7,15):\n x,y=d[i];h.update(x.numpy().tobytes());h.update(str(y).encode())\n"
        "print(h.hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == _digest(ds, (0, 7, 15))


def test_train_and_eval_splits_share_classes_but_not_samples():
    task = get_task("cifar10")
    train = task.build_dataset("train", data="synthetic", seed=0)
    evaluation = task.build_dataset("eval", data="synthetic", seed=0)
    assert (len(train), len(evaluation)) == (task.config.synthetic_size["train"], task.config.synthetic_size["eval"])
    assert train.class_seed == evaluation.class_seed and train.seed != evaluation.seed
    assert not torch.equal(train[0][0], evaluation[0][0])
    # Same class structure: a class mean of train is closest to the same class's eval mean.
    means = [torch.stack([ds[i][0] for i in range(c, 100, 10)]).mean(0) for ds in (train, evaluation) for c in (0, 1)]
    assert (means[0] - means[2]).norm() < (means[0] - means[3]).norm()


def test_image_values_look_like_normalized_images():
    ds = SyntheticDataset("image", (3, 32, 32), 10, 40, seed=0, class_seed=0)
    x = torch.stack([ds[i][0] for i in range(40)])
    assert abs(x.mean()) < 0.2 and 0.7 < x.std() < 1.4
    assert x.abs().max() < 10


def test_events_are_sparse_non_negative_counts_that_move():
    ds = SyntheticDataset("event", (8, 2, 64, 64), 4, 8, seed=0, class_seed=0)
    x = torch.stack([ds[i][0] for i in range(8)])
    assert x.min() == 0 and torch.equal(x, x.round())
    assert (x == 0).float().mean() > 0.85  # mostly silent, like binned DVS recordings
    assert x[:, :, 0].sum() > 0 and x[:, :, 1].sum() > 0  # ON and OFF events both occur
    # The blob moves: the event centroid of the first and last frames differ.
    ys = torch.arange(64, dtype=torch.float32)

    def centroid(frame):  # row centroid of the events of one frame, both polarities
        return (frame.sum(1) * ys).sum() / frame.sum()

    assert abs(centroid(x[0, 0].sum(0)) - centroid(x[0, -1].sum(0))) > 1.0


@pytest.mark.parametrize("shape", [(3, 48, 25), (4, 3, 12, 25)])
def test_skeleton_trajectories_are_smooth_in_time(shape):
    ds = SyntheticDataset("skeleton", shape, 6, 6, seed=0, class_seed=0)
    x = torch.stack([ds[i][0] for i in range(6)])
    assert x.shape[1:] == shape
    if len(shape) == 4:  # [T, C, H, W]: segments follow each other in time
        x = x.permute(0, 2, 1, 3, 4).flatten(2, 3)  # -> [N, C, T*H, W]
    series = x.permute(0, 1, 3, 2).flatten(0, 2)  # one row per (sample, coordinate, joint) over time
    moving = series[series.std(dim=1) > 0.15]  # joints that travel well beyond the noise
    assert len(moving) > 0.1 * len(series)
    next_frame = (moving[:, 1:] - moving[:, :-1]).abs().mean()
    lag = moving.shape[1] // 4
    quarter_clip = (moving[:, lag:] - moving[:, :-lag]).abs().mean()
    assert next_frame < 0.4 * quarter_clip  # smooth: neighbours agree, distant frames differ


def test_bad_arguments_are_named():
    with pytest.raises(UsageError, match="modality 'audio'"):
        SyntheticDataset("audio", (3, 8, 8), 2, 4)
    with pytest.raises(UsageError, match=r"\[T, 2, H, W\]"):
        SyntheticDataset("event", (3, 8, 8), 2, 4)
    with pytest.raises(UsageError, match="num_classes"):
        SyntheticDataset("image", (3, 8, 8), 1, 4)


def _accuracy_after_training(train, evaluation, model_kwargs, steps=60) -> float:
    torch.manual_seed(0)
    model = create_model("spikformer-1-32", lif_backend="reference", **model_kwargs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    done = 0
    while done < steps:
        for x, y in DataLoader(train, batch_size=32, shuffle=True):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(evaluation, batch_size=64):
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(evaluation)


def test_image_task_synthetic_data_is_learnable(one_thread):
    task = get_task("cifar10")
    train = task.build_dataset("train", data="synthetic", seed=0)
    evaluation = task.build_dataset("eval", data="synthetic", seed=0, synthetic_size=160)
    accuracy = _accuracy_after_training(train, evaluation, task.model_kwargs(time_steps=1))
    assert accuracy >= 2.5 / task.num_classes, accuracy


@pytest.mark.parametrize(
    "modality,model_kwargs",
    [
        ("event", {"stem": "dvs", "in_channels": 2, "img_size": (32, 32), "time_steps": 4}),
        ("skeleton", {"stem": "cifar", "in_channels": 3, "img_size": (32, 25), "time_steps": 1}),
    ],
)
def test_event_and_skeleton_synthetic_data_is_learnable(one_thread, modality, model_kwargs):
    shape = SHAPES[modality]
    train = SyntheticDataset(modality, shape, 10, 512, seed=0, class_seed=0)
    evaluation = SyntheticDataset(modality, shape, 10, 160, seed=1, class_seed=0)
    accuracy = _accuracy_after_training(train, evaluation, dict(num_classes=10, **model_kwargs))
    assert accuracy >= 0.25, accuracy
