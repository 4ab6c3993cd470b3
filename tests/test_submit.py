"""`suite submit` and `suite jobs` against a real 2-node Ray cluster (token auth on) and a real
MLflow server, both on loopback; plus the checks that reject bad input before anything is sent."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from suite import ray_jobs_client
from suite.cli import main
from suite.errors import UsageError
from tests.helpers.cluster import REPO_ROOT, base_env, http_get, mlflow_server, ray_cluster  # noqa: F401
from tests.helpers.ports import free_port

TINY_RUN = [
    "run", "--task", "cifar10", "--model", "spikformer-1-32", "--data", "synthetic", "--synthetic-size", "32",
    "--batch-size", "16", "--epochs", "1", "--amp", "off", "--time-steps", "1",
]  # fmt: skip


def suite_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


# -- input checks (no cluster) ---------------------------------------------------------------------
def test_dashboard_address_accepts_host_port_forms_and_refuses_ray_client():
    assert ray_jobs_client.dashboard_address("10.0.0.5") == "http://10.0.0.5:8265"
    assert ray_jobs_client.dashboard_address("10.0.0.5:9000") == "http://10.0.0.5:9000"
    assert ray_jobs_client.dashboard_address("https://ray.example.com/") == "https://ray.example.com:8265"
    with pytest.raises(UsageError, match="Ray Client address"):
        ray_jobs_client.dashboard_address("ray://head:10001")
    with pytest.raises(UsageError, match="--address is required"):
        ray_jobs_client.dashboard_address(None)


def test_auth_token_is_found_where_ray_looks_and_bad_files_fail(tmp_path, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ray_jobs_client.read_auth_token() is None

    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert ray_jobs_client.read_auth_token().value == "from-home"
    path_file = tmp_path / "t"
    path_file.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path_file))
    assert ray_jobs_client.read_auth_token().value == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert ray_jobs_client.read_auth_token().value == "from-env"
    explicit = tmp_path / "explicit"
    explicit.write_text("explicit")
    token = ray_jobs_client.read_auth_token(explicit)
    assert token.value == "explicit" and "explicit" not in token.source.replace(str(explicit), "")

    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ray_jobs_client.ClusterAuthError, match="is empty"):
        ray_jobs_client.read_auth_token(empty)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ray_jobs_client.ClusterAuthError, match="cannot read the Ray auth token"):
        ray_jobs_client.read_auth_token()


@pytest.mark.parametrize(
    "uri, message",
    [
        (None, "--tracking-uri is required"),
        ("sqlite:////tmp/mlflow.db", "SQLite database"),
        ("file:///tmp/mlruns", "cannot be the tracking store of a cluster"),
        ("./mlruns", "cannot be the tracking store of a cluster"),
        ("ftp://mlflow:21", "not an MLflow tracking server"),
        ("http://127.0.0.1:5000", "loopback"),
    ],
)
def test_cluster_tracking_uri_must_be_a_server_the_nodes_reach(uri, message):
    with pytest.raises(UsageError, match=message):
        ray_jobs_client.check_cluster_tracking_uri(uri, "http://10.0.0.5:8265")


def test_cluster_tracking_uri_accepts_servers():
    assert ray_jobs_client.check_cluster_tracking_uri("http://mlflow.mlflow.svc:5000", "http://10.0.0.5:8265")
    # A cluster on this machine (the tests') reaches a server on this machine's loopback.
    assert ray_jobs_client.check_cluster_tracking_uri("http://127.0.0.1:5000", "http://127.0.0.1:8265")


def test_runtime_env_uploads_code_but_not_envs_history_or_data(tmp_path):
    from ray._private.runtime_env.packaging import create_package

    for rel in (".venv/lib/x.py", ".git/HEAD", "data/cifar/batch", "mlruns/0/meta.yaml", "suite/data/loader.py",
                "suite/cli.py", "suite/__pycache__/cli.cpython-311.pyc", "weights.pt", "mlflow.db"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    env = ray_jobs_client.build_runtime_env(tracking_uri="http://m:5000", working_dir=tmp_path, env_vars={"A": "1"})
    assert env["env_vars"] == {"MLFLOW_TRACKING_URI": "http://m:5000", "PYTHONUNBUFFERED": "1", "A": "1"}
    package = tmp_path.parent / f"{tmp_path.name}.zip"
    create_package(str(tmp_path), package, include_gitignore=True, excludes=env["excludes"])
    names = set(zipfile.ZipFile(package).namelist())
    assert "suite/cli.py" in names and "suite/data/loader.py" in names  # a nested `data` package is code
    assert not any(n.startswith((".venv", ".git", "data/", "mlruns")) or n.endswith((".pyc", ".pt", ".db")) for n in names)


def test_runtime_env_never_carries_the_auth_token(tmp_path):
    with pytest.raises(UsageError, match="auth token is not passed to jobs"):
        ray_jobs_client.build_runtime_env(tracking_uri="http://m:5000", working_dir=None, env_vars={"RAY_AUTH_TOKEN": "x"})


def test_job_command_joins_the_cluster_and_logs_to_the_server():
    from suite.commands.submit import job_args

    assert job_args("run", ["run", "--task", "cifar10"], "http://m:5000") == [
        "run", "--tracking-uri", "http://m:5000", "--address", "auto", "--task", "cifar10"]  # fmt: skip
    given = ["tune", "--address", "10.0.0.1:6379", "--tracking-uri=http://x:1"]
    assert job_args("tune", given, "http://m:5000") == given
    assert job_args("models", ["models", "--json"], "http://m:5000") == ["models", "--json"]


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["submit", "--address", "http://127.0.0.1:1", "--tracking-uri", "http://127.0.0.1:5000"], 2, "nothing to submit"),
        (["submit", "--address", "http://127.0.0.1:1", "--tracking-uri", "http://127.0.0.1:5000", "--", "jobs", "list"],
         2, "cannot submit 'jobs'"),
        (["submit", "--address", "http://127.0.0.1:1", "--tracking-uri", "http://127.0.0.1:5000", "--", "run", "--bogus"],
         2, "the command after -- is invalid"),
        (["submit", "--address", "http://127.0.0.1:1", "--tracking-uri", "sqlite:////tmp/x.db", "--", *TINY_RUN],
         2, "SQLite database cannot be the tracking store of a cluster"),
        (["submit", "--address", "http://127.0.0.1:1", "--", *TINY_RUN], 2, "--tracking-uri is required"),
    ],
)
def test_submit_rejects_bad_input_before_contacting_anything(argv, code, message, capsys):
    assert main(argv) == code
    assert message in capsys.readouterr().err


def test_unreachable_address_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "x" * 64)
    port = free_port()  # nothing listens there
    argv = ["submit", "--address", f"127.0.0.1:{port}", "--tracking-uri", "http://127.0.0.1:5000", "--", *TINY_RUN]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the Ray Jobs API at http://127.0.0.1:{port}" in err and "8265" in err
    assert main(["jobs", "list", "--address", f"127.0.0.1:{port}"]) == 1
    assert "cannot reach the Ray Jobs API" in capsys.readouterr().err


# -- against the real cluster ----------------------------------------------------------------------
def client_env(ray_cluster, token_file: Path | None = None) -> dict[str, str]:
    env = base_env(ray_cluster.home)
    if token_file is not None:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    return env


@pytest.mark.cluster
def test_cluster_refuses_requests_without_the_token(ray_cluster):
    status, _ = http_get(f"{ray_cluster.dashboard_url}/api/version")
    assert status == 401  # token auth is on: the dashboard itself refuses anonymous requests


@pytest.mark.cluster
def test_missing_token_is_a_clear_error(ray_cluster):
    result = suite_cli(["jobs", "list", "--address", ray_cluster.dashboard_url], client_env(ray_cluster))
    assert result.returncode == 1
    assert "requires an auth token and none was found" in result.stderr and "ray get-auth-token" in result.stderr


@pytest.mark.cluster
def test_wrong_token_is_a_clear_error(ray_cluster, tmp_path):
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    result = suite_cli(["jobs", "list", "--address", ray_cluster.dashboard_url, "--token-file", str(wrong)],
                       client_env(ray_cluster))
    assert result.returncode == 1
    assert "rejected the auth token from --token-file" in result.stderr
    assert "0" * 64 not in result.stderr  # the token itself is never printed


@pytest.mark.cluster
def test_submitted_run_uses_both_nodes_and_lands_in_mlflow(ray_cluster, mlflow_server):
    from mlflow.tracking import MlflowClient

    argv = ["submit", "--address", ray_cluster.dashboard_url, "--tracking-uri", mlflow_server.uri, "--",
            *TINY_RUN, "--workers", "2", "--experiment", "submit-test"]  # fmt: skip
    result = suite_cli(argv, client_env(ray_cluster, ray_cluster.token_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job_id = result.stdout.split("job id: ", 1)[1].split()[0]
    assert f"job {job_id} SUCCEEDED" in result.stdout
    assert "epoch 1/1" in result.stdout  # the job's logs were followed

    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("submit-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert {"top1", "train_loss", "best_top1", "samples_per_s"} <= set(run.data.metrics)
    assert "embedded" not in run.data.tags["suite.ray_address"]  # it joined the cluster

    # One Ray Train worker on each node: 2 workers of 1 CPU on two 1-CPU nodes.
    status, body = http_get(f"{ray_cluster.dashboard_url}/api/v0/actors?limit=1000&detail=1", ray_cluster.token)
    assert status == 200
    actors = json.loads(body)["data"]["result"]["result"]
    workers = [a for a in actors if a["class_name"] == "RayTrainWorker" and a.get("job_id")]
    assert len({a["node_id"] for a in workers}) == 2

    listing = suite_cli(["jobs", "list", "--address", ray_cluster.dashboard_url],
                        client_env(ray_cluster, ray_cluster.token_path))
    assert listing.returncode == 0 and job_id in listing.stdout and "SUCCEEDED" in listing.stdout
    logs = suite_cli(["jobs", "logs", job_id, "--address", ray_cluster.dashboard_url],
                     client_env(ray_cluster, ray_cluster.token_path))
    assert logs.returncode == 0 and "finished in" in logs.stdout


@pytest.mark.cluster
def test_failed_job_makes_submit_exit_nonzero_with_the_jobs_error(ray_cluster, mlflow_server):
    argv = ["submit", "--address", ray_cluster.dashboard_url, "--tracking-uri", mlflow_server.uri, "--",
            "run", "--task", "cifar10", "--model", "spikformer-1-32", "--data-root", "/nonexistent/suite-data"]  # fmt: skip
    result = suite_cli(argv, client_env(ray_cluster, ray_cluster.token_path))
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "data not found" in result.stderr


@pytest.mark.cluster
def test_jobs_stop_and_status(ray_cluster, mlflow_server):
    env = client_env(ray_cluster, ray_cluster.token_path)
    long_run = [*TINY_RUN, "--epochs", "1000", "--experiment", "stop-test"]
    argv = ["submit", "--no-wait", "--address", ray_cluster.dashboard_url, "--tracking-uri", mlflow_server.uri,
            "--submission-id", "suite-stop-test", "--", *long_run]  # fmt: skip
    submitted = suite_cli(argv, env)
    assert submitted.returncode == 0 and "job id: suite-stop-test" in submitted.stdout
    stopped = suite_cli(["jobs", "stop", "suite-stop-test", "--address", ray_cluster.dashboard_url], env)
    assert stopped.returncode == 0 and "suite-stop-test: STOPPED" in stopped.stdout
    status = suite_cli(["jobs", "status", "suite-stop-test", "--address", ray_cluster.dashboard_url], env)
    assert status.returncode == 0 and "STOPPED" in status.stdout
    unknown = suite_cli(["jobs", "status", "no-such-job", "--address", ray_cluster.dashboard_url], env)
    assert unknown.returncode == 1 and "no-such-job" in unknown.stderr
