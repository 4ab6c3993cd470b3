"""`suite run` end to end with a real embedded Ray and a real MLflow SQLite store, on CPU.

- bad input (unknown task/model, bad flag values, unreachable tracking server, missing data,
  bad --resume) fails before Ray starts, with one error line and the error's exit code;
- a 2-worker run whose rank-1 worker crashes in epoch 1 (SUITE_TEST_CRASH) is restarted from
  the epoch-0 checkpoint and ends as one FINISHED MLflow run with every param, tag, metric and
  artifact, each epoch logged exactly once;
- a driver killed with SIGKILL after its first checkpoint is continued by `--resume RUN_ID` into
  the same MLflow run.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from suite import schema, tracking
from suite.cli import main
from suite.engine.checkpoint import STATE_FILE
from suite.engine.config import FIELD_NAMES
from suite.engine.crash_injection import CRASH_ENV, DEFAULT_MARKER
from suite.engine.run_logger import LAYER_FIRING_RATE_PREFIX, TAG_RESUMED_FROM_EPOCH
from tests.helpers.cli_runs import TINY, kill_after_first_checkpoint, metric_steps, mlflow_runs
from tests.helpers.ports import free_port

EPOCH_METRICS = [
    schema.M_EPOCH, schema.M_LOSS, schema.M_TOP1, schema.M_TOP5, schema.M_BEST_TOP1, schema.M_EVAL_LOSS, schema.M_LR,
    schema.M_SAMPLES_PER_S, schema.M_SOPS, schema.M_ENERGY, schema.M_FIRING_RATE, schema.M_PARAMS, schema.M_PEAK_MEMORY,
]


def _cli(args: list[str], home: Path, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, SUITE_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "-m", "suite", "run", *args], env=environment, capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------ errors before anything starts


@pytest.mark.slow
def test_unknown_task_and_unreachable_server_fail_fast_as_subprocesses(tmp_path):
    unknown = _cli(["--task", "cifar11", *TINY], tmp_path)
    assert unknown.returncode == 2
    assert _one_error_line(unknown.stderr).startswith("python -m suite run: error: unknown task 'cifar11'; valid tasks:")

    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = _cli(["--task", "cifar10", *TINY, "--tracking-uri", dead], tmp_path)
    assert unreachable.returncode == 1
    assert f"MLflow tracking server {dead} is unreachable" in _one_error_line(unreachable.stderr)
    assert not (tmp_path / "ray_results").exists()  # failed before Ray and before any run


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--task", "cifar10", *TINY, "--model", "spikformer-x"], 2, "unknown model 'spikformer-x'"),
        (["--task", "cifar10", *TINY, "--epochs", "0"], 2, "--epochs must be a positive integer, got 0"),
        (["--task", "cifar10", *TINY, "--amp", "fp16"], 2, "--amp fp16 needs CUDA workers"),
        (["--task", "cifar10", *TINY, "--workers", "3"], 2, "needs 3 CPUs"),
        (["--task", "cifar10", *TINY, "--protocol", "xsub"], 2, "task 'cifar10' has no protocol 'xsub'"),
        (["--task", "cifar10", *TINY, "--tracking-uri", "./mlruns"], 2, "file store is not supported"),
        (["--model", "spikformer-1-32"], 2, "--task is required"),
        (["--resume", "0123abc", "--epochs", "3"], 2, "--resume continues a run with its stored config; drop --epochs"),
        (["--resume", "0123abc"], 2, "--resume 0123abc: there is no MLflow store at sqlite:///"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(args, code, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    monkeypatch.setattr("suite.engine.ray_session.machine_cpus", lambda: 2)
    assert main(["run", *args]) == code
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("python -m suite run: error: ") and message in line


def test_missing_data_names_the_task_and_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert main(["run", "--task", "cifar10", "--data-root", str(empty), "--model", "spikformer-1-32"]) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert first == (
        f"python -m suite run: error: task 'cifar10': data not found at {empty / 'cifar10'} "
        "(pass --download to fetch it, or --data synthetic to try the pipeline)"
    )
    assert not (tmp_path / "ray_results").exists()


# ------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def ray_session():
    """One embedded Ray for the in-process runs of this module (start-up costs seconds)."""
    from suite.engine.ray_session import start_ray

    session = start_ray(None)
    yield session
    import ray

    ray.shutdown()


@pytest.mark.slow
def test_two_worker_run_survives_a_worker_crash_as_one_mlflow_run(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    monkeypatch.setenv(CRASH_ENV, "epoch=1,rank=1,step=1")  # default marker: in the Ray run folder
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    args = ["--task", "cifar10", *TINY, "--epochs", "3", "--synthetic-size", "32", "--workers", "2", "--max-failures", "1"]
    assert main(["run", *args]) == 0
    out = capsys.readouterr().out

    client, runs = mlflow_runs(tracking.default_tracking_uri())
    assert len(runs) == 1
    run = runs[0]
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert f"MLflow run {run_id}" in out and f"mlflow ui --backend-store-uri {tracking.default_tracking_uri()}" in out
    # the link that opens MLflow's training view on this experiment's runs (README, test_leaderboard_browser)
    assert f"then open {tracking.experiment_url(tracking.default_tracking_uri(), run.info.experiment_id)}" in out
    assert "resolved config:" in out and "best top-1" in out

    # The crash happened (marker), the group restarted from the epoch-0 checkpoint, every epoch logged once.
    ray_run_dir = Path(run.data.tags[tracking.TAG_RAY_STORAGE]) / run.data.tags[tracking.TAG_RAY_RUN_NAME]
    assert (ray_run_dir / DEFAULT_MARKER).read_text().startswith("crashed rank 1 at epoch 1 step 1")
    assert run.data.tags[TAG_RESUMED_FROM_EPOCH] == "0"
    for key in EPOCH_METRICS:
        assert metric_steps(client, run_id, key) == [0, 1, 2], key
    assert [m.value for m in sorted(client.get_metric_history(run_id, schema.M_EPOCH), key=lambda m: m.step)] == [0, 1, 2]

    # Params: the resolved config; tags: the schema's.
    params = run.data.params
    assert set(params) == set(FIELD_NAMES)
    assert (params["workers"], params["epochs"], params["model"], params["data"]) == ("2", "3", "spikformer-1-32", "synthetic")
    # What the run changed of the cifar10 recipe, the short run's scaled schedule included (3/310 of 10, 200).
    deviations = params["recipe_deviations"]
    assert "epochs 3 (recipe 310)" in deviations and "warmup_epochs 1 (recipe 20)" in deviations
    assert "cooldown_epochs 0 (recipe 10)" in deviations and "mixup_off_epoch 2 (recipe 200)" in deviations
    tags = run.data.tags
    assert tags[schema.TAG_KIND] == "run" and tags[schema.TAG_TASK] == "cifar10"
    assert tags[schema.TAG_PROTOCOL] == "default" and tags[schema.TAG_MODEL] == "spikformer-1-32"
    assert tags[schema.TAG_TIME_STEPS] == "2" and tags[schema.TAG_DATA] == schema.DATA_SYNTHETIC
    assert tags[schema.TAG_SEED] == "0" and len(tags[schema.TAG_CONFIG_HASH]) == 16
    assert tags[schema.TAG_VERSION] and tags[schema.TAG_GIT_COMMIT]
    assert tags[schema.TAG_DEVICE].startswith("cpu:") and tags[schema.TAG_DEVICE].endswith("x2")
    assert tags[schema.TAG_RAY_ADDRESS].startswith("127.0.0.1:") and tags[schema.TAG_RAY_ADDRESS].endswith("(embedded)")

    # Metrics: exact eval over all 32 samples, SNN figures, per-layer firing rates, system metrics.
    last = run.data.metrics
    assert last[schema.M_TOP1] * 32 / 100 == pytest.approx(round(last[schema.M_TOP1] * 32 / 100))
    assert last[schema.M_BEST_TOP1] >= last[schema.M_TOP1]
    assert last[schema.M_SOPS] > 0 and last[schema.M_ENERGY] > 0 and 0 < last[schema.M_FIRING_RATE] < 1
    assert last[schema.M_PARAMS] > 0 and last[schema.M_PEAK_MEMORY] > 0 and last[schema.M_SAMPLES_PER_S] > 0
    layer_keys = [k for k in last if k.startswith(LAYER_FIRING_RATE_PREFIX)]
    assert any("attn" in k for k in layer_keys) and any("mlp" in k for k in layer_keys)
    assert all(metric_steps(client, run_id, k) == [0, 1, 2] for k in layer_keys)
    assert any(k.startswith("system/") for k in last)

    # Artifacts: config, firing-rate tables, best checkpoint (weights_only), the model.
    artifacts = Path(run.info.artifact_uri)
    config = yaml.safe_load((artifacts / "config.yaml").read_text())
    assert {k: str(v) for k, v in config.items()} == {k: v for k, v in params.items()}
    for epoch in range(3):
        table = (artifacts / "firing_rates" / f"epoch_{epoch:04d}.csv").read_text().splitlines()
        assert table[0] == "epoch,layer,firing_rate" and len(table) == 1 + len(layer_keys)
    best = torch.load(artifacts / "checkpoints" / "best" / STATE_FILE, weights_only=True)
    assert best["epoch"] == best["best_epoch"] and best["best_top1"] == pytest.approx(last[schema.M_BEST_TOP1])
    assert len(best["rng"]) == 2  # both workers' RNG states
    kept = glob.glob(str(ray_run_dir / "checkpoint_*" / STATE_FILE))
    assert 1 <= len(kept) <= 3  # the best two by top-1, and the latest
    assert {torch.load(file, weights_only=True)["epoch"] for file in kept} >= {2, best["epoch"]}
    import mlflow.pytorch

    models = client.search_logged_models([run.info.experiment_id])
    assert [m.source_run_id for m in models] == [run_id]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking.default_tracking_uri())  # models:/ URIs resolve in the current store
    try:
        model = mlflow.pytorch.load_model(models[0].model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    assert torch.equal(model.state_dict()["head.weight"], best["model"]["head.weight"])
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
def test_a_failing_run_ends_failed_with_its_error(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    args = ["--task", "cifar10", *TINY, "--epochs", "1", "--synthetic-size", "4", "--max-failures", "0"]
    assert main(["run", *args]) == 2  # the worker's UsageError, passed through Ray
    # Ray forwards its workers' logs to this process's stderr too; the CLI's own output is the last line.
    line = capsys.readouterr().err.rstrip().splitlines()[-1]
    assert line == (
        "python -m suite run: error: the training set has 4 samples, fewer than the batch size 8; "
        "lower --batch-size or raise --synthetic-size"
    )
    _, runs = mlflow_runs(tracking.default_tracking_uri())
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags[tracking.TAG_ERROR].startswith("the training set has 4 samples")
    assert "Traceback" in (Path(runs[0].info.artifact_uri) / "error.txt").read_text()


@pytest.mark.slow
def test_driver_killed_with_sigkill_is_resumed_into_the_same_run(tmp_path):
    home = tmp_path / "home"
    args = ["--task", "cifar10", *TINY, "--epochs", "3", "--synthetic-size", "32", "--workers", "1"]
    _, run_id, done_before = kill_after_first_checkpoint(
        args, dict(os.environ, SUITE_HOME=str(home)), home,
        lambda: glob.glob(str(home / "ray_results" / "*" / "checkpoint_*" / STATE_FILE)),
    )
    uri = tracking.sqlite_uri(home / "mlflow.db")

    resumed = _cli(["--resume", run_id], home, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"MLflow run {run_id}" in resumed.stdout

    client, runs = mlflow_runs(uri)
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert metric_steps(client, run_id, schema.M_EPOCH) == [0, 1, 2]
    assert metric_steps(client, run_id, schema.M_TOP1) == [0, 1, 2]
    resumed_from = int(run.data.tags[TAG_RESUMED_FROM_EPOCH])
    assert resumed_from >= 0 and set(range(resumed_from)) <= set(done_before)
    assert len(os.listdir(home / "ray_results")) == 1  # the same Ray run folder, not a new one
