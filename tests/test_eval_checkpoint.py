"""Checkpoints for `suite eval`, without Ray: the official timm layout loads safely and completely,
a recorded architecture is checked against the model, unsafe pickles and truncated files are
refused with clear errors, before any Ray worker or MLflow run exists."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
import yaml

from official_reference import official_state_dict
from suite.cli import main
from suite.engine.evaluate import evaluate
from suite.models import create_model, load_official_state_dict
from suite.models.checkpoints import CheckpointError, check_architecture, load_weights, read_checkpoint
from suite.task_registry import get_task

OFFICIAL_YML = {  # ZK-Zhou/spikformer cifar10/cifar10.yml, with the tiny model's architecture
    "epochs": 300, "time_step": 2, "layer": 1, "dim": 32, "num_heads": 1, "patch_size": 4, "mlp_ratio": 4,
    "data_dir": "/data/cifar-10-python/", "dataset": "torch/cifar10", "num_classes": 10, "img_size": 32,
    "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616], "crop_pct": 1.0, "scale": [1.0, 1.0],
    "ratio": [1.0, 1.0], "color_jitter": 0.0, "interpolation": "bicubic", "train_interpolation": "bicubic",
    "aa": "rand-m9-n1-mstd0.4-inc1", "mixup": 0.5, "mixup_off_epoch": 200, "mixup_prob": 1.0, "mixup_mode": "batch",
    "mixup_switch_prob": 0.5, "cutmix": 0.0, "reprob": 0.25, "remode": "const", "amp": True, "batch_size": 128,
    "val_batch_size": 128, "lr": 5e-4, "min_lr": 1e-5, "sched": "cosine", "weight_decay": 6e-2, "cooldown_epochs": 10,
    "warmup_epochs": 20, "warmup_lr": 0.00001, "opt": "adamw", "smoothing": 0.1, "workers": 16,
}


@pytest.fixture(autouse=True)
def suite_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path / "home"))


def write_official_checkpoint(path, **arg_changes) -> dict:
    """A checkpoint as the official train.py's timm CheckpointSaver writes it, for spikformer-1-32."""
    weights = official_state_dict("cifar10", depth=1, dim=32, in_channels=3, num_classes=10, seed=5)
    params = [torch.nn.Parameter(w.clone().float()) for w in weights.values() if w.is_floating_point()]
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    torch.save(
        {
            "epoch": 299, "arch": "spikformer", "version": 2, "metric": 95.19,
            "state_dict": {f"module.{k}": v for k, v in weights.items()},  # saved from DDP
            "optimizer": optimizer.state_dict(),
            "args": argparse.Namespace(**{**OFFICIAL_YML, **arg_changes}),
        },
        path,
    )
    return weights


def test_official_layout_loads_with_its_recorded_architecture(tmp_path):
    path = tmp_path / "model_best.pth.tar"
    weights = write_official_checkpoint(path)
    checkpoint = read_checkpoint(path)
    assert (checkpoint.format, checkpoint.weights_entry) == ("official", "state_dict")
    assert checkpoint.args["num_heads"] == 1 and checkpoint.inferred_model() == {"model": "spikformer-1-32", "time_steps": 2}
    assert len(checkpoint.sha256) == 64 and not any(k.startswith("module.") for k in checkpoint.state_dict)

    task = get_task("cifar10")
    model = create_model("spikformer-1-32", **task.model_kwargs(2))
    check_architecture(checkpoint, "spikformer-1-32", model.config)
    load_weights(model, checkpoint)
    direct = create_model("spikformer-1-32", **task.model_kwargs(2))
    load_official_state_dict(direct, weights)
    dataset = task.build_dataset("eval", data="synthetic", time_steps=2, synthetic_size=4)
    cpu = torch.device("cpu")
    assert evaluate(model, dataset, batch_size=4, device=cpu) == evaluate(direct, dataset, batch_size=4, device=cpu)


def test_a_changed_head_count_is_named(tmp_path, capsys):
    path = tmp_path / "heads.pth.tar"
    write_official_checkpoint(path, num_heads=2)
    checkpoint = read_checkpoint(path)
    model = create_model("spikformer-1-32", **get_task("cifar10").model_kwargs(2))
    with pytest.raises(CheckpointError, match=r"heads: checkpoint args\.num_heads=2, model 1"):
        check_architecture(checkpoint, "spikformer-1-32", model.config)
    # Through the CLI: one line, before Ray or MLflow start.
    args = ["eval", "--task", "cifar10", "--checkpoint", str(path), "--data", "synthetic", "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "heads: checkpoint args.num_heads=2, model 1" in err and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()


def test_other_architecture_mismatches_name_both_values(tmp_path):
    path = tmp_path / "other.pth.tar"
    write_official_checkpoint(path, time_step=4, patch_size=16)
    checkpoint = read_checkpoint(path)
    model = create_model("spikformer-1-32", **get_task("cifar10").model_kwargs(2))
    with pytest.raises(CheckpointError) as err:
        check_architecture(checkpoint, "spikformer-1-32", model.config)
    assert "time steps T: checkpoint args.time_step=4, model 2" in str(err.value)
    assert "patch size: checkpoint args.patch_size=16, model 4" in str(err.value)


def test_missing_keys_and_shapes_are_named(tmp_path):
    weights = official_state_dict("cifar10", depth=1, dim=32, in_channels=3, num_classes=10)
    del weights["head.bias"]
    torch.save({"state_dict": weights}, tmp_path / "partial.pth")
    model = create_model("spikformer-1-32", **get_task("cifar100").model_kwargs(2))
    with pytest.raises(Exception) as err:
        load_weights(model, read_checkpoint(tmp_path / "partial.pth"))
    assert "missing ['head.bias']" in str(err.value)
    assert "head.weight: checkpoint (10, 32) vs model (100, 32)" in str(err.value)


def test_a_pickled_function_is_refused_unless_trusted(tmp_path, capsys):
    weights = official_state_dict("cifar10", depth=1, dim=32, in_channels=3, num_classes=10)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": weights, "hook": os.getcwd}, path)
    with pytest.raises(CheckpointError, match=r"pickles objects a safe load refuses: posix\.getcwd.*--trust-checkpoint"):
        read_checkpoint(path)
    assert read_checkpoint(path, trust=True).format == "official"
    assert main(["eval", "--task", "cifar10", "--checkpoint", str(path), "--data", "synthetic"]) == 1
    assert "posix.getcwd" in capsys.readouterr().err


def test_a_truncated_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "model_best.pth.tar"
    write_official_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot be read as a torch checkpoint: it is truncated or corrupted"):
        read_checkpoint(path)
    assert main(["eval", "--task", "cifar10", "--checkpoint", str(path), "--data", "synthetic"]) == 1
    assert "truncated or corrupted" in capsys.readouterr().err
    legacy = tmp_path / "legacy.pth"  # torch's pre-1.6 format, not a zip archive
    torch.save({"state_dict": {"head.weight": torch.ones(3, 3)}}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"legacy\.pth \(200 bytes\) cannot be read .* truncated or corrupted"):
        read_checkpoint(legacy)


def test_suite_checkpoints_record_their_model_and_formats_are_checked(tmp_path):
    from suite.engine import checkpoint as ckpt

    model = create_model("spikformer-1-32", **get_task("cifar10").model_kwargs(2))
    ckpt.save_checkpoint(tmp_path, {"model": model.state_dict(), "settings": {"task": "cifar10", "model": "spikformer-1-32", "time_steps": 2}})
    checkpoint = read_checkpoint(tmp_path / ckpt.STATE_FILE)
    assert (checkpoint.format, checkpoint.weights_entry) == ("suite", "model")
    assert checkpoint.inferred_model() == {"model": "spikformer-1-32", "time_steps": 2}
    other = create_model("spikformer-1-32", **get_task("cifar10").model_kwargs(4))
    with pytest.raises(CheckpointError, match="time_steps: checkpoint trained as 2, evaluating as 4"):
        check_architecture(checkpoint, "spikformer-1-32", other.config)
    with pytest.raises(Exception, match="--format official: .* holds suite-format weights"):
        read_checkpoint(tmp_path / ckpt.STATE_FILE, fmt="official")
    (tmp_path / "note.yaml").write_text(yaml.safe_dump({"a": 1}))
    with pytest.raises(Exception, match="--checkpoint .*missing.pt: no such file"):
        read_checkpoint(tmp_path / "missing.pt")
