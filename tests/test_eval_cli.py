"""`suite eval` end to end with a real embedded Ray and a real MLflow SQLite store, on CPU.

- a 1-epoch synthetic `suite run`, then `suite eval --run ID`: the eval run's top-1/top-5 (and
  SOPs) equal the run's logged values exactly, with 1 and with 2 workers, and the eval is a row
  of the generated board, marked as an evaluation of its checkpoint;
- an official-layout checkpoint evaluates, with NeuroBench's metrics logged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from suite import schema, tracking
from suite.cli import main
from suite.engine.evaluate import evaluate
from suite.models import create_model, load_official_state_dict
from suite.models.checkpoints import file_sha256
from suite.task_registry import get_task
from tests.helpers.official_checkpoint import write_official_checkpoint

pytestmark = pytest.mark.slow  # every test here trains or evaluates through a real Ray

TINY_RUN = [
    "--task", "cifar10", "--model", "spikformer-1-32", "--data", "synthetic", "--time-steps", "2", "--batch-size", "8",
    "--warmup-epochs", "0", "--amp", "off", "--epochs", "1", "--synthetic-size", "16",
]


@pytest.fixture(scope="module")
def ray_session():
    """One embedded Ray for this module's runs (start-up costs seconds)."""
    from suite.engine.ray_session import start_ray

    session = start_ray(None)
    yield session
    import ray

    ray.shutdown()


def _runs_of_kind(uri: str, kind: str):
    client = tracking.client(uri)
    experiment = client.get_experiment_by_name(schema.DEFAULT_EXPERIMENT)
    return [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags[schema.TAG_KIND] == kind]


@pytest.mark.parametrize("workers", [1, 2])
def test_eval_of_a_run_reproduces_its_best_epoch_and_joins_the_board(workers, ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    assert main(["run", *TINY_RUN, "--workers", str(workers)]) == 0
    uri = tracking.default_tracking_uri()
    (trained,) = _runs_of_kind(uri, schema.KIND_RUN)
    capsys.readouterr()

    assert main(["eval", "--run", trained.info.run_id]) == 0  # no other flag: the run's config
    out = capsys.readouterr().out
    (evaluated,) = _runs_of_kind(uri, schema.KIND_EVAL)
    assert evaluated.info.status == "FINISHED" and f"MLflow run {evaluated.info.run_id}" in out
    got, want = evaluated.data.metrics, trained.data.metrics
    assert got[schema.M_TOP1] == want[schema.M_BEST_TOP1] == want[schema.M_TOP1]  # one epoch: it is the best
    assert got[schema.M_TOP5] == want[schema.M_TOP5]
    assert got[schema.M_SOPS] == want[schema.M_SOPS] and got[schema.M_FIRING_RATE] == want[schema.M_FIRING_RATE]
    assert got[schema.M_EVAL_LOSS] == pytest.approx(want[schema.M_EVAL_LOSS], rel=1e-12)
    assert got[schema.M_EVAL_SAMPLES] == 16  # the whole eval split, once, however many workers

    tags, params = evaluated.data.tags, evaluated.data.params
    best_file = Path(trained.info.artifact_uri) / "checkpoints" / "best" / "state.pt"
    assert tags[schema.TAG_CHECKPOINT_SHA256] == file_sha256(best_file)
    assert tags[schema.TAG_CHECKPOINT_FORMAT] == "suite (model)"
    assert tags[schema.TAG_CHECKPOINT_ORIGIN] == f"mlflow-run:{trained.info.run_id}"
    assert json.loads(tags[schema.TAG_MODEL_CONFIG])["depth"] == 1 and params["model_config.heads"] == "1"
    assert tags[schema.TAG_DEVICE].endswith(f"x{workers}") and params["workers"] == str(workers)
    assert tags[schema.TAG_MODEL] == "spikformer-1-32" and tags[schema.TAG_DATA] == schema.DATA_SYNTHETIC

    if workers == 1:  # the board once is enough
        board = tmp_path / "boards"
        assert main(["leaderboard", "--task", "cifar10", "--out", str(board), "--no-publish", "--tracking-uri", uri]) == 0
        text = (board / "cifar10_default.md").read_text()
        sha = tags[schema.TAG_CHECKPOINT_SHA256][:8]
        eval_rows = [line for line in text.splitlines() if f"[eval sha256:{sha}]" in line]
        assert len(eval_rows) == 1 and evaluated.info.run_id[:8] in eval_rows[0]
        trained_rows = [line for line in text.splitlines() if trained.info.run_id[:8] in line]
        assert len(trained_rows) == 1 and "[eval" not in trained_rows[0]
        csv_text = (board / "cifar10_default.csv").read_text()
        assert f",eval,{tags[schema.TAG_CHECKPOINT_SHA256]}," in csv_text


def test_an_official_checkpoint_evaluates_with_neurobench(ray_session, tmp_path, monkeypatch, capsys):
    pytest.importorskip("neurobench", reason="the optional neurobench extra is not installed")
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    path = tmp_path / "model_best.pth.tar"
    weights = write_official_checkpoint(path)
    args = ["eval", "--task", "cifar10", "--checkpoint", str(path), "--data", "synthetic", "--synthetic-size", "8",
            "--batch-size", "8", "--amp", "off", "--neurobench"]
    assert main(args) == 0  # model and T come from the checkpoint's args
    assert "NeuroBench:" in capsys.readouterr().out
    (evaluated,) = _runs_of_kind(tracking.default_tracking_uri(), schema.KIND_EVAL)
    tags, metrics = evaluated.data.tags, evaluated.data.metrics
    assert tags[schema.TAG_CHECKPOINT_FORMAT] == "official (state_dict)" and tags[schema.TAG_MODEL] == "spikformer-1-32"
    assert tags[schema.TAG_CHECKPOINT_ORIGIN] == str(path) and tags[schema.TAG_TIME_STEPS] == "2"
    assert evaluated.data.params["epochs"] == "300"  # the training it had, from its args

    task = get_task("cifar10")
    model = create_model("spikformer-1-32", **task.model_kwargs(2)).to(memory_format=torch.channels_last)
    load_official_state_dict(model, weights)
    dataset = task.build_dataset("eval", data="synthetic", time_steps=2, synthetic_size=8)
    expected = evaluate(model, dataset, batch_size=8, device=torch.device("cpu"))
    assert metrics[schema.M_TOP1] == expected.top1 and metrics[schema.M_TOP5] == expected.top5
    for key in (schema.M_NB_FOOTPRINT, schema.M_NB_CONNECTION_SPARSITY, schema.M_NB_ACCURACY,
                schema.M_NB_ACTIVATION_SPARSITY, schema.M_NB_DENSE, schema.M_NB_EFFECTIVE_MACS, schema.M_NB_EFFECTIVE_ACS):
        assert key in metrics, key
    assert metrics[schema.M_NB_ACCURACY] * 100 == pytest.approx(metrics[schema.M_TOP1], rel=1e-6)
    assert 0 < metrics[schema.M_NB_EFFECTIVE_ACS] < metrics[schema.M_NB_DENSE]
