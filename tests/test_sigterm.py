"""Stopping `suite run` and `suite tune` with SIGTERM (`kill PID`, `suite jobs stop`) or Ctrl-C.

- the signal handlers themselves: SIGTERM and SIGINT raise `RunInterrupted` once, exit code
  128 + the signal, previous handlers restored, nothing installed off the main thread; for Tune,
  SIGTERM is handed to the SIGINT handler of the moment;
- a real `python -m suite run` (embedded Ray, SQLite MLflow store) stopped by SIGTERM mid-training
  exits 143 with its MLflow run KILLED and no process of its tree left; `--resume` continues it
  from its last registered checkpoint, and a Ctrl-C then stops it again (130, KILLED): one run,
  every epoch logged once;
- a real `suite tune` sweep stopped by SIGTERM exits 143 with its parent and trial run KILLED;
- a run submitted to a 2-node Ray cluster and stopped with `suite jobs stop` ends KILLED, within
  the 3 s Ray's Jobs API gives a job between its SIGTERM and its SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from suite import schema
from suite.engine.run_logger import TAG_RESUMED_FROM_EPOCH
from suite.engine.stop_signals import Received, RunInterrupted, sigterm_like_sigint, stop_signals_interrupt
from tests.helpers.cluster import (  # noqa: F401  (fixtures)
    REPO_ROOT, ManagedProcess, base_env, http_get, mlflow_server, ray_cluster, wait_until,
)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EPOCHS = 30  # more than the runs get through before they are stopped
TINY_RUN = [
    "--task", "cifar10", "--model", "spikformer-1-32", "--data", "synthetic", "--synthetic-size", "96",
    "--batch-size", "8", "--time-steps", "1", "--warmup-epochs", "1", "--amp", "off", "--workers", "1",
]  # fmt: skip


# -- the handlers ----------------------------------------------------------------------------------
def test_first_stop_signal_raises_run_interrupted_and_repeats_only_log():
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    with stop_signals_interrupt() as received:
        with pytest.raises(RunInterrupted) as caught:
            signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # a repeat while cleaning up: no second exception
        signal.raise_signal(signal.SIGINT)
    assert (caught.value.signum, caught.value.signal_name, caught.value.exit_code) == (signal.SIGTERM, "SIGTERM", 143)
    assert isinstance(caught.value, KeyboardInterrupt)  # the driver's Ctrl-C path catches it
    assert received.signum == signal.SIGTERM
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == before

    with stop_signals_interrupt(), pytest.raises(RunInterrupted) as caught:
        signal.raise_signal(signal.SIGINT)
    assert caught.value.exit_code == 130  # as the CLI's exit status for Ctrl-C


def test_a_plain_keyboard_interrupt_stands_for_the_signal_received():
    # ray.get replaces the exception a handler raises while it waits by a new KeyboardInterrupt.
    received = Received()
    received.signum = signal.SIGTERM
    stop = received.interrupt(KeyboardInterrupt())
    assert isinstance(stop, RunInterrupted) and stop.exit_code == 143
    original = RunInterrupted(signal.SIGINT)
    assert received.interrupt(original) is original
    assert Received().interrupt(KeyboardInterrupt()).signum == signal.SIGINT  # a real Ctrl-C


def test_handlers_are_left_alone_off_the_main_thread():
    seen = []

    def body():
        with stop_signals_interrupt(), sigterm_like_sigint():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_sigterm_is_handed_to_the_sigint_handler_of_the_moment():
    calls = []
    previous_int = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    before = signal.getsignal(signal.SIGTERM)
    try:
        with sigterm_like_sigint() as received:
            signal.raise_signal(signal.SIGTERM)  # as Ray Tune's graceful stop: no exception
        assert calls == [signal.SIGINT] and received.signum == signal.SIGTERM
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with sigterm_like_sigint(), pytest.raises(RunInterrupted) as caught:  # no Tune loop yet
            signal.raise_signal(signal.SIGTERM)
        assert caught.value.exit_code == 143
    finally:
        signal.signal(signal.SIGINT, previous_int)
    assert signal.getsignal(signal.SIGTERM) is before


# -- real runs -------------------------------------------------------------------------------------
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(uri: str, experiment: str = schema.DEFAULT_EXPERIMENT) -> list:
    try:
        found = _client(uri).get_experiment_by_name(experiment)
        return [] if found is None else _client(uri).search_runs([found.experiment_id])
    except Exception:  # the store is still being created by the process under test
        return []


def _epochs(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in _client(uri).get_metric_history(run_id, schema.M_EPOCH))


def _first_run_past_epoch(uri: str, epoch: int):
    """A check: the store's first run has logged an epoch beyond `epoch`."""

    def check() -> bool:
        runs = _runs(uri)
        try:
            return bool(runs) and max(_epochs(uri, runs[0].info.run_id), default=-1) > epoch
        except Exception:  # the store is busy: ask again
            return False

    return check


def _signal_and_collect(process: ManagedProcess, signum: int, timeout_s: float = 90) -> tuple[int, list]:
    """Send `signum`; the exit code, and the processes of its tree still alive 15 s after it exited."""
    tree = psutil.Process(process.proc.pid).children(recursive=True)
    assert tree, "the driver should have started Ray's processes"
    process.proc.send_signal(signum)
    code = process.proc.wait(timeout_s)
    _, alive = psutil.wait_procs(tree, timeout=15)
    return code, alive + [p for p in process.session_members() if p not in alive]


def _suite(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_sigterm_and_ctrl_c_end_a_run_killed_and_resume_continues_it(tmp_path):
    home = tmp_path / "suite"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env = base_env(tmp_path / "home") | {"SUITE_HOME": str(home)}

    first = ManagedProcess("suite run", [sys.executable, "-m", "suite", "run", *TINY_RUN, "--epochs", str(EPOCHS)],
                           env, tmp_path / "first.log")
    try:
        wait_until(_first_run_past_epoch(uri, -1), 300, "the run's first epoch in MLflow", [first])
        code, left = _signal_and_collect(first, signal.SIGTERM)
    finally:
        first.stop()
    log = first.log_tail(100_000)
    (run,) = _runs(uri)
    run_id = run.info.run_id
    assert code == 143, log[-3000:]
    assert not left, f"processes of the stopped run left running: {left}"
    assert run.info.status == "KILLED"
    done = _epochs(uri, run_id)
    assert done and len(done) < EPOCHS, done  # stopped mid-training, after at least one epoch
    assert f"stopped by SIGTERM: MLflow run {run_id} is KILLED; continue it with: python -m suite run --resume {run_id}" in log

    # --resume continues from the last checkpoint the stopped run registered; Ctrl-C stops it again.
    second = ManagedProcess("suite run --resume", [sys.executable, "-m", "suite", "run", "--resume", run_id],
                            env, tmp_path / "second.log")
    try:
        wait_until(_first_run_past_epoch(uri, max(done)), 300, "an epoch after the resume", [second])
        code, left = _signal_and_collect(second, signal.SIGINT)
    finally:
        second.stop()
    run = _client(uri).get_run(run_id)
    assert code == 130, second.log_tail()
    assert not left, f"processes of the stopped run left running: {left}"
    assert run.info.status == "KILLED"
    resumed_from = int(run.data.tags[TAG_RESUMED_FROM_EPOCH])
    assert resumed_from >= max(done)  # not from scratch: from the stopped run's newest checkpoint
    assert f"stopped by SIGINT: MLflow run {run_id} is KILLED" in second.log_tail()

    assert _epochs(uri, run_id) == list(range(len(_epochs(uri, run_id))))  # each epoch once, none lost
    assert len(os.listdir(home / "ray_results")) == 1  # one Ray run folder for both drivers


@pytest.mark.slow
def test_sigterm_stops_a_sweep_with_every_run_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = base_env(tmp_path / "home") | {"SUITE_HOME": str(tmp_path / "suite")}
    argv = [sys.executable, "-m", "suite", "tune", *TINY_RUN[:-2], "--epochs", "30", "--samples", "1",
            "--scheduler", "fifo", "--param", "lr=loguniform:1e-4:1e-2", "--experiment", "sigterm-tune",
            "--tracking-uri", uri]  # fmt: skip

    def trials_training() -> bool:
        trials = [r for r in _runs(uri, "sigterm-tune") if r.data.tags.get("suite.kind") == "trial"]
        return len(trials) == 1 and schema.M_EPOCH in trials[0].data.metrics

    sweep = ManagedProcess("suite tune", argv, env, tmp_path / "tune.log")
    try:
        wait_until(trials_training, 300, "the trial's first epoch in MLflow", [sweep])
        code, left = _signal_and_collect(sweep, signal.SIGTERM)
    finally:
        sweep.stop()
    log = sweep.log_tail(100_000)
    assert code == 143, log[-3000:]
    assert not left, f"processes of the stopped sweep left running: {left}"
    runs = _runs(uri, "sigterm-tune")
    (parent,) = [r for r in runs if r.data.tags.get("suite.kind") == "sweep"]
    assert sorted(r.data.tags.get("suite.kind") for r in runs) == ["sweep", "trial"]
    assert {r.info.status for r in runs} == {"KILLED"}, [(r.data.tags.get("suite.kind"), r.info.status) for r in runs]
    assert f"continue it with: python -m suite tune --resume sweep-{parent.info.run_id}" in log


@pytest.mark.cluster
def test_jobs_stop_ends_a_submitted_run_killed(ray_cluster, mlflow_server):
    env = base_env(ray_cluster.home) | {"RAY_AUTH_TOKEN_PATH": str(ray_cluster.token_path)}
    submitted = _suite(["submit", "--no-wait", "--address", ray_cluster.dashboard_url, "--tracking-uri",
                        mlflow_server.uri, "--submission-id", "sigterm-stop", "--", "run", *TINY_RUN,
                        "--epochs", "1000", "--experiment", "sigterm-jobs"], env)  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]

    def training() -> bool:
        runs = _runs(mlflow_server.uri, "sigterm-jobs")
        try:
            return bool(runs) and bool(_epochs(mlflow_server.uri, runs[0].info.run_id))
        except Exception:  # the server is busy: ask again
            return False

    deadline = time.monotonic() + 300
    while not training():
        status = _suite(["jobs", "status", "sigterm-stop", "--address", ray_cluster.dashboard_url], env)
        assert "RUNNING" in status.stdout or "PENDING" in status.stdout, status.stdout + status.stderr
        assert time.monotonic() < deadline, "the submitted run never logged an epoch"
        time.sleep(2)

    stopped = _suite(["jobs", "stop", "sigterm-stop", "--address", ray_cluster.dashboard_url], env)
    assert stopped.returncode == 0 and "sigterm-stop: STOPPED" in stopped.stdout, stopped.stdout + stopped.stderr
    (run,) = _runs(mlflow_server.uri, "sigterm-jobs")
    assert run.info.status == "KILLED"  # set before Ray's Jobs API SIGKILLs the driver 3 s after its SIGTERM

    def train_actors_alive() -> list[str]:
        code, body = http_get(f"{ray_cluster.dashboard_url}/api/v0/actors?limit=1000&detail=1", ray_cluster.token)
        assert code == 200
        actors = json.loads(body)["data"]["result"]["result"]
        return [a["class_name"] for a in actors if a["state"] == "ALIVE" and a["class_name"] in
                ("TrainController", "RayTrainWorker")]

    deadline = time.monotonic() + 30
    while train_actors_alive() and time.monotonic() < deadline:
        time.sleep(1)
    assert not train_actors_alive(), "the stopped run's Ray Train actors outlived it"
