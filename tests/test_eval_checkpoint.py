"""Checkpoints for `suite eval`, without Ray: the official timm layout loads safely and completely,
a recorded architecture is checked against the model, unsafe pickles and truncated files are
refused with clear errors, before any Ray worker or MLflow run exists."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from suite.cli import main
from suite.engine.evaluate import evaluate
from suite.models import create_model, load_official_state_dict
from suite.models.checkpoints import CheckpointError, check_architecture, load_weights, read_checkpoint
from suite.task_registry import get_task
from tests.helpers.official_checkpoint import write_official_checkpoint
from tests.helpers.official_reference import official_state_dict


@pytest.fixture(autouse=True)
def suite_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path / "home"))


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
