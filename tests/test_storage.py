"""`--storage-path`: Ray Train checkpoints (and Tune state) in a shared folder or an s3:// bucket.

The S3 bucket is a real S3-compatible server on 127.0.0.1 (moto's server mode) that pyarrow, which
Ray uses for s3:// storage, reaches through AWS_ENDPOINT_URL_S3. A 2-worker run there is killed
after its first checkpoint and `--resume RUN_ID` continues it from the checkpoint in the bucket.
"""

from __future__ import annotations

import glob
import subprocess
import sys

import pytest

from suite import schema, tracking
from suite.engine.checkpoint import STATE_FILE
from suite.engine.run_logger import TAG_RESUMED_FROM_EPOCH
from suite.engine.storage import check_storage, exists, join, resolve_storage_path
from suite.errors import SuiteError, UsageError
from tests.helpers.cli_runs import TINY, kill_after_first_checkpoint, metric_steps, mlflow_runs
from tests.helpers.cluster import base_env

BUCKET = "suite-checkpoints"


def test_storage_paths_resolve_to_absolute_folders_or_checked_uris(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_path(None) == str(tmp_path / "home" / "ray_results")
    assert resolve_storage_path("shared/ckpt") == str(tmp_path / "shared" / "ckpt")
    assert resolve_storage_path("file:///mnt/nfs/runs") == "/mnt/nfs/runs"
    assert resolve_storage_path("s3://bucket/runs/") == "s3://bucket/runs"
    assert resolve_storage_path("gs://bucket/runs") == "gs://bucket/runs"
    assert join("s3://bucket/runs", "suite-1") == "s3://bucket/runs/suite-1"
    with pytest.raises(UsageError, match="--storage-path 'ftp://host/x': unsupported scheme 'ftp'"):
        resolve_storage_path("ftp://host/x")
    with pytest.raises(UsageError, match="name the bucket"):
        resolve_storage_path("s3://")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match="is a file, expected a folder"):
        check_storage(str(tmp_path / "a-file"))


@pytest.fixture
def s3_env(tmp_path):
    """A moto S3 server on 127.0.0.1 with one bucket, and the environment that points pyarrow at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
    }  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    try:
        yield env, s3
    finally:
        server.stop()


def _keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_missing_bucket_fails_before_ray_starts(s3_env, tmp_path, monkeypatch):
    env, _ = s3_env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    check_storage(f"s3://{BUCKET}/runs")  # the bucket exists: fine
    assert not exists(f"s3://{BUCKET}/runs/nothing-here")
    with pytest.raises(SuiteError, match="--storage-path s3://no-such-bucket/runs: not writable"):
        check_storage("s3://no-such-bucket/runs")


@pytest.mark.slow
def test_a_run_keeps_its_checkpoints_in_the_storage_path_folder(tmp_path):
    home, shared = tmp_path / "home", tmp_path / "shared"
    args = ["--task", "cifar10", *TINY, "--epochs", "1", "--synthetic-size", "16", "--storage-path", str(shared)]
    done = _suite(args, base_env(tmp_path / "user") | {"SUITE_HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr
    client, (run,) = mlflow_runs(tracking.sqlite_uri(home / "mlflow.db"))
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.TAG_RAY_STORAGE] == run.data.params["storage_path"] == str(shared)
    assert glob.glob(str(shared / f"suite-{run.info.run_id}" / "checkpoint_*" / STATE_FILE))
    assert not (home / "ray_results").exists()  # nothing went to the default folder


@pytest.mark.slow
def test_two_worker_run_on_s3_killed_after_its_first_checkpoint_resumes_from_the_bucket(s3_env, tmp_path):
    env_s3, s3 = s3_env
    home = tmp_path / "home"
    env = base_env(tmp_path / "user") | env_s3 | {"SUITE_HOME": str(home)}
    storage = f"s3://{BUCKET}/runs"
    args = ["--task", "cifar10", *TINY, "--epochs", "3", "--synthetic-size", "32", "--workers", "2",
            "--storage-path", storage]  # fmt: skip
    client, run_id, done_before = kill_after_first_checkpoint(
        args, env, home, lambda: any(k.endswith(STATE_FILE) for k in _keys(s3, "runs/"))
    )
    assert client.get_run(run_id).data.tags[tracking.TAG_RAY_STORAGE] == storage  # what --resume reads
    uri = tracking.sqlite_uri(home / "mlflow.db")

    resumed = _suite(["--resume", run_id], env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    client, runs = mlflow_runs(uri)
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"
    assert metric_steps(client, run_id, schema.M_EPOCH) == [0, 1, 2]
    resumed_from = int(runs[0].data.tags[TAG_RESUMED_FROM_EPOCH])
    # From a checkpoint in the bucket; the kill can fall between a checkpoint's commit and its epoch's
    # logging, and then the resume logs that epoch from the checkpoint (RunLogger.backfill).
    assert resumed_from >= 0 and set(range(resumed_from)) <= set(done_before)
    checkpoints = {k.split("/")[2] for k in _keys(s3, f"runs/suite-{run_id}/") if k.endswith(STATE_FILE)}
    assert checkpoints and all(name.startswith("checkpoint_") for name in checkpoints)
    assert not (home / "ray_results").exists()  # nothing on the local disk: all in the bucket


def _suite(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite", "run", *args], env=env, capture_output=True, text=True,
                          timeout=900)
