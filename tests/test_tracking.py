"""suite.tracking against a real MLflow SQLite store and a real local HTTP server (no mocks)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from suite import schema, tracking
from suite.errors import TrackingError, UsageError
from tests.helpers.ports import free_port


@pytest.fixture
def suite_home(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.SUITE_HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


def test_work_folder_and_default_store(suite_home):
    assert tracking.work_dir() == suite_home.resolve() and suite_home.is_dir()
    assert tracking.default_tracking_uri() == f"sqlite:///{suite_home.resolve()}/mlflow.db"
    assert tracking.ray_storage_dir() == suite_home.resolve() / "ray_results"
    assert tracking.resolve_tracking_uri(None) == tracking.default_tracking_uri()
    assert tracking.ui_command(tracking.default_tracking_uri()) == (
        f"mlflow ui --backend-store-uri sqlite:///{suite_home.resolve()}/mlflow.db"
    )


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_tracking_uri("sqlite:///runs/x.db") == f"sqlite:///{tmp_path.resolve()}/runs/x.db"
    assert tracking.resolve_tracking_uri("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    for refused in ("file:///tmp/mlruns", "./mlruns", "/abs/mlruns"):
        with pytest.raises(UsageError, match="file store is not supported"):
            tracking.resolve_tracking_uri(refused)
    with pytest.raises(UsageError, match="unsupported scheme 'ftp'"):
        tracking.resolve_tracking_uri("ftp://host/x")
    with pytest.raises(UsageError, match="expected sqlite:///PATH"):
        tracking.resolve_tracking_uri("sqlite://")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    servers = []

    def start(status: int) -> str:
        handler = type("Handler", (_Health,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


def test_server_probe(health_server):
    tracking.check_tracking_server(health_server(200))
    with pytest.raises(TrackingError, match=r"refused the health check: HTTP 401 \(set MLFLOW_TRACKING_USERNAME"):
        tracking.check_tracking_server(health_server(401))
    with pytest.raises(TrackingError, match="refused the health check: HTTP 503"):
        tracking.check_tracking_server(health_server(503))
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match=rf"MLflow tracking server {dead} is unreachable .*omit --tracking-uri"):
        tracking.check_tracking_server(dead)


def test_sqlite_probe_needs_a_writable_folder(tmp_path):
    tracking.check_tracking_server(tracking.sqlite_uri(tmp_path / "new" / "mlflow.db"))
    assert (tmp_path / "new").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrackingError, match="cannot create folder"):
        tracking.check_tracking_server(tracking.sqlite_uri(blocker / "sub" / "mlflow.db"))


def test_run_creation_tags_params_artifacts_and_failure(suite_home, tmp_path):
    uri = tracking.default_tracking_uri()
    tags = {schema.TAG_KIND: "run", schema.TAG_TASK: "cifar10", schema.TAG_SEED: 3}
    run_id = tracking.create_run(uri, "exp-a", run_name="r1", tags=tags, params={f"p{i}": i for i in range(150)})
    run = tracking.get_run(uri, run_id)
    assert run.info.status == "RUNNING" and run.info.run_name == "r1"
    assert run.data.tags[schema.TAG_SEED] == "3" and run.data.tags[schema.TAG_TASK] == "cifar10"
    assert len(run.data.params) == 150 and run.data.params["p149"] == "149"  # past log_batch's 100 limit
    # Artifacts go beside the SQLite file, not into ./mlruns of whatever folder the process is in.
    assert run.info.artifact_uri.startswith(str(suite_home.resolve() / "artifacts" / "exp-a"))
    assert tracking.get_or_create_experiment(uri, "exp-a") == run.info.experiment_id

    tracking.mark_failed(uri, run_id, RuntimeError("boom\nsecond line"), "Traceback: boom")
    failed = tracking.get_run(uri, run_id)
    assert failed.info.status == "FAILED" and failed.data.tags[tracking.TAG_ERROR] == "boom"
    error_file = Path(failed.info.artifact_uri) / "error.txt"
    assert error_file.read_text() == "Traceback: boom"
    tracking.reopen_run(uri, run_id)
    assert tracking.get_run(uri, run_id).info.status == "RUNNING"
    tracking.mark_status(uri, run_id, "FINISHED")
    assert tracking.get_run(uri, run_id).info.status == "FINISHED"
    with pytest.raises(UsageError, match="--resume 0123: no such MLflow run"):
        tracking.get_run(uri, "0123")


def test_data_fingerprint_follows_the_files(tmp_path):
    (tmp_path / "cifar" / "batches").mkdir(parents=True)
    (tmp_path / "cifar" / "batches" / "a.bin").write_bytes(b"123")
    first = tracking.data_fingerprint(tmp_path / "cifar")
    assert first.startswith("real:") and first == tracking.data_fingerprint(tmp_path / "cifar")
    (tmp_path / "cifar" / "batches" / "a.bin").write_bytes(b"1234")
    assert tracking.data_fingerprint(tmp_path / "cifar") != first


def test_config_hash_is_stable_and_excludes_seed():
    a = tracking.config_hash({"lr": 0.1, "seed": 1, "model": "m"})
    assert a == tracking.config_hash({"model": "m", "seed": 2, "lr": 0.1})
    assert a != tracking.config_hash({"model": "m", "seed": 1, "lr": 0.2})
    assert len(a) == 16
