"""Running the real `suite run` CLI from tests: the tiny model's flags, the runs it leaves in MLflow,
and a driver killed after its first checkpoint (for the resume tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from suite import schema, tracking

TINY = [
    "--model", "spikformer-1-32", "--data", "synthetic", "--time-steps", "2", "--batch-size", "8", "--warmup-epochs", "1",
    "--amp", "off",
]


def mlflow_runs(uri: str):
    client = tracking.client(uri)
    experiment = client.get_experiment_by_name(schema.DEFAULT_EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id])


def metric_steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _wait_for(predicate, timeout: float, what: str, process: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"the run exited ({process.returncode}) before {what}:\n{process.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _epoch_logged(home: Path) -> bool:
    if not (home / "mlflow.db").exists():
        return False
    try:
        client, runs = mlflow_runs(tracking.sqlite_uri(home / "mlflow.db"))
    except Exception:  # the store is still being created by the driver
        return False
    return bool(runs) and bool(metric_steps(client, runs[0].info.run_id, schema.M_EPOCH))


def kill_after_first_checkpoint(args: list[str], env: dict[str, str], home: Path, checkpoint_written) -> tuple:
    """Start `suite run ARGS` and SIGKILL its driver (and Ray's processes of its session) once its first
    checkpoint is committed; returns (MLflow client, run id, the epochs it logged)."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "suite", "run", *args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        _wait_for(checkpoint_written, 600, "the first checkpoint", driver)
        # The files land before Ray registers the checkpoint; rank 0 logs an epoch to MLflow only
        # once its checkpoint is registered, so that is the moment a resume must start from it.
        _wait_for(lambda: _epoch_logged(home), 600, "the first epoch's metrics", driver)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        # Ray's helper processes share the driver's session; none may live on to touch the run.
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    client, runs = mlflow_runs(tracking.sqlite_uri(home / "mlflow.db"))
    # RUNNING, or FAILED when rank 0 saw its worker group torn down: either way not FINISHED.
    assert len(runs) == 1 and runs[0].info.status in ("RUNNING", "FAILED"), "the driver should have died mid-run"
    return client, runs[0].info.run_id, metric_steps(client, runs[0].info.run_id, schema.M_EPOCH)
