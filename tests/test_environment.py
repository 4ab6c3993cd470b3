"""MLflow's and Ray's environment conventions: `--tracking-uri`, else MLFLOW_TRACKING_URI, else the
embedded store; `--address`, else RAY_ADDRESS, else an embedded Ray. A flag beats each variable;
the values and their sources are logged and in the run's MLflow params. Suite experiments are
tagged as model-training experiments so that `mlflow ui` opens them on their runs table.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from suite import schema, tracking
from suite.engine.config import resolve_settings
from suite.engine.ray_session import resolve_ray_address
from suite.errors import UsageError
from tests.helpers.cli_runs import TINY, mlflow_runs
from tests.helpers.cluster import LocalRayCluster, short_tmp_dir


@pytest.fixture
def suite_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_tracking_uri_from_flag_else_environment_else_embedded_store(suite_home, tmp_path, monkeypatch):
    default = tracking.default_tracking_uri()
    assert tracking.resolve_tracking(None) == tracking.Resolved(default, "default")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    assert tracking.resolve_tracking(None) == tracking.Resolved(f"sqlite:///{tmp_path}/env.db", "$MLFLOW_TRACKING_URI")
    flag = tracking.resolve_tracking(f"sqlite:///{tmp_path}/flag.db")
    assert flag == tracking.Resolved(f"sqlite:///{tmp_path}/flag.db", "--tracking-uri")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "./mlruns")  # MLflow's file store, refused naming the variable
    with pytest.raises(UsageError, match=r"\$MLFLOW_TRACKING_URI './mlruns': MLflow 3's file store is not supported"):
        tracking.resolve_tracking(None)


def test_ray_address_from_flag_else_environment_else_embedded(monkeypatch):
    assert resolve_ray_address(None) == tracking.Resolved(None, "default")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_ray_address(None) == tracking.Resolved("10.0.0.1:6379", "$RAY_ADDRESS")
    assert resolve_ray_address("10.0.0.2:6379") == tracking.Resolved("10.0.0.2:6379", "--address")
    assert resolve_ray_address("local") == tracking.Resolved(None, "--address")  # Ray's word for a Ray here
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert resolve_ray_address(None) == tracking.Resolved(None, "$RAY_ADDRESS")


def test_settings_record_each_value_with_its_source(suite_home, tmp_path, monkeypatch):
    settings = resolve_settings("cifar10", {"data": "synthetic"})
    assert (settings.tracking_uri_source, settings.address, settings.address_source) == ("default", None, "default")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    settings = resolve_settings("cifar10", {"data": "synthetic"})
    assert (settings.tracking_uri, settings.tracking_uri_source) == (f"sqlite:///{tmp_path}/env.db", "$MLFLOW_TRACKING_URI")
    assert (settings.address, settings.address_source) == ("10.0.0.1:6379", "$RAY_ADDRESS")
    flags = {"data": "synthetic", "tracking_uri": f"sqlite:///{tmp_path}/flag.db", "address": "10.0.0.2:6379"}
    settings = resolve_settings("cifar10", flags)
    assert (settings.tracking_uri_source, settings.address, settings.address_source) == (
        "--tracking-uri", "10.0.0.2:6379", "--address")
    # A sweep's trial gets the sweep's resolved settings back as input: the sources stay.
    again = resolve_settings("cifar10", {k: v for k, v in settings.to_dict().items() if k != "task"})
    assert again == settings


def test_suite_experiments_are_tagged_as_model_training(suite_home):
    uri = tracking.default_tracking_uri()
    client = tracking.client(uri)
    fresh = tracking.get_or_create_experiment(uri, "fresh")
    assert client.get_experiment(fresh).tags[tracking.TAG_EXPERIMENT_KIND] == "custom_model_development"
    older = client.create_experiment("made-before-the-tag")  # e.g. by an older suite
    assert tracking.get_or_create_experiment(uri, "made-before-the-tag") == older
    assert client.get_experiment(older).tags[tracking.TAG_EXPERIMENT_KIND] == "custom_model_development"
    chosen = client.create_experiment("kind-chosen", tags={tracking.TAG_EXPERIMENT_KIND: "genai_development"})
    tracking.get_or_create_experiment(uri, "kind-chosen")
    assert client.get_experiment(chosen).tags[tracking.TAG_EXPERIMENT_KIND] == "genai_development"  # left alone


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray head (1 CPU, token auth) for runs to find through RAY_ADDRESS or --address."""
    root = short_tmp_dir("sfenv-")
    cluster = LocalRayCluster(root, worker_node=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def _suite_run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "suite", "run", *args], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


@pytest.mark.cluster
def test_runs_honour_the_environment_and_flags_beat_it(ray_head, tmp_path):
    tiny = ["--task", "cifar10", *TINY, "--epochs", "1", "--synthetic-size", "8", "--cpus-per-worker", "1"]
    env_store, flag_store = tmp_path / "env.db", tmp_path / "flag.db"
    head = f"127.0.0.1:{ray_head.gcs_port}"
    env = ray_head.env | {"SUITE_HOME": str(tmp_path / "home")}

    # The environment alone: the run joins the Ray head of RAY_ADDRESS and logs to MLFLOW_TRACKING_URI.
    done = _suite_run(tiny, env | {"RAY_ADDRESS": head, "MLFLOW_TRACKING_URI": f"sqlite:///{env_store}"})
    _, (run,) = mlflow_runs(f"sqlite:///{env_store}")
    joined = run.data.tags[schema.TAG_RAY_ADDRESS]  # Ray reports the head by its node's outward IP
    assert joined.endswith(f":{ray_head.gcs_port}") and "embedded" not in joined
    params = run.data.params
    assert (params["tracking_uri"], params["tracking_uri_source"]) == (f"sqlite:///{env_store}", "$MLFLOW_TRACKING_URI")
    assert (params["address"], params["address_source"]) == (head, "$RAY_ADDRESS")
    assert f"MLflow tracking store: sqlite:///{env_store} (from $MLFLOW_TRACKING_URI); Ray: {head} (from $RAY_ADDRESS)" in done.stderr
    assert not (tmp_path / "home" / "mlflow.db").exists()

    # Flags beat both variables: an unreachable RAY_ADDRESS and another store are never used.
    env |= {"RAY_ADDRESS": "127.0.0.1:1", "MLFLOW_TRACKING_URI": f"sqlite:///{env_store}"}
    _suite_run([*tiny, "--tracking-uri", f"sqlite:///{flag_store}", "--address", head], env)
    _, (run,) = mlflow_runs(f"sqlite:///{flag_store}")
    assert run.data.tags[schema.TAG_RAY_ADDRESS] == joined
    assert (run.data.params["tracking_uri_source"], run.data.params["address_source"]) == ("--tracking-uri", "--address")
    assert len(mlflow_runs(f"sqlite:///{env_store}")[1]) == 1  # the first run only
