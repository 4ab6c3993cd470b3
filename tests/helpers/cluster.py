"""Real services on loopback for the cluster tests: a 2-node Ray cluster with token auth and an
MLflow server with a SQLite backend.

Every process is started in its own session (`start_new_session=True`), so stopping means:
SIGTERM to the process we started, then SIGKILL to whatever is left in that session (Ray's
workers change their process group but keep the session). `ray stop` is never used: it would
also kill Ray processes that other people on this machine started.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.helpers.ports import free_port

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent


def base_env(home: Path) -> dict[str, str]:
    """The environment of every process a test starts: isolated HOME, this venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(
        HOME=str(home),  # keeps ~/.ray/auth_token of the real user out of the tests
        PATH=f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    return env


class ManagedProcess:
    """One started process and its session; `stop()` leaves nothing of it running."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.sid = self.proc.pid

    def session_members(self) -> list[psutil.Process]:
        members = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.sid:
                    members.append(p)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return members

    def stop(self, grace_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                logger.info("%s did not stop on SIGTERM within %.0f s; killing its session", self.name, grace_s)
        deadline = time.monotonic() + grace_s
        while self.session_members() and time.monotonic() < deadline:
            time.sleep(0.5)
        for p in self.session_members():
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(self.session_members(), timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def wait_until(check, timeout_s: float, what: str, processes: list[ManagedProcess]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in processes:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.proc.returncode} while waiting for {what}:\n{p.log_tail()}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in processes)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")


def http_get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class LocalRayCluster:
    """A head (1 CPU, dashboard on 127.0.0.1) and, unless `worker_node=False`, a worker node (1 CPU,
    resource `second_node`)."""

    def __init__(self, root: Path, head_cpus: int = 1, worker_cpus: int = 1, worker_node: bool = True):
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.token_path = root / "ray_auth_token"
        self.token = secrets.token_hex(32)
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = base_env(self.home) | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}
        self.processes: list[ManagedProcess] = []
        ray = str(BIN_DIR / "ray")
        common = ["--block", "--disable-usage-stats", "--num-gpus", "0", "--object-store-memory", str(150 * 2**20)]
        # Ports with fixed defaults are chosen free, so a second cluster on this machine cannot clash.
        head = [
            ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.gcs_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
            "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
            "--num-cpus", str(head_cpus), "--temp-dir", str(root / "ray"), *common,
        ]  # fmt: skip
        worker = [
            ray, "start", "--address", f"127.0.0.1:{self.gcs_port}", "--num-cpus", str(worker_cpus),
            "--resources", json.dumps({"second_node": 1}), "--dashboard-agent-listen-port", str(free_port()),
            "--temp-dir", str(root / "ray-worker"), *common,
        ]  # fmt: skip
        # The worker has its own temp dir, as a real second machine would: with a shared one, its
        # runtime-env agent deletes job working dirs that the head's job drivers still run in.
        try:
            self.processes.append(ManagedProcess("ray head", head, self.env, root / "ray_head.log"))
            wait_until(self._dashboard_up, 120, "the Ray dashboard", self.processes)
            if worker_node:
                self.processes.append(ManagedProcess("ray worker", worker, self.env, root / "ray_worker.log"))
            nodes = 2 if worker_node else 1
            wait_until(lambda: self.alive_nodes() == nodes, 120, f"{nodes} alive Ray node(s)", self.processes)
        except BaseException:
            self.stop()
            raise

    def _dashboard_up(self) -> bool:
        return http_get(f"{self.dashboard_url}/api/version", self.token)[0] == 200

    def alive_nodes(self) -> int:
        status, body = http_get(f"{self.dashboard_url}/api/v0/nodes?limit=100", self.token)
        if status != 200:
            return 0
        nodes = json.loads(body)["data"]["result"]["result"]
        return sum(1 for n in nodes if n["state"] == "ALIVE")

    def leftover_processes(self) -> list[psutil.Process]:
        return [p for m in self.processes for p in m.session_members()]

    def stop(self) -> None:
        for p in reversed(self.processes):  # the worker first, so it does not wait for a dead GCS
            p.stop()


class LocalMlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite backend and a local artifact folder."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        self.process = ManagedProcess("mlflow server", argv, base_env(root), root / "mlflow.log")
        try:
            wait_until(lambda: http_get(f"{self.uri}/health")[0] == 200, 180, "the MLflow server", [self.process])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.stop()


def short_tmp_dir(prefix: str) -> Path:
    # Ray's Unix socket paths live under the temp dir and must stay under ~107 characters.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="module")
def ray_cluster():
    root = short_tmp_dir("sfray-")
    cluster = LocalRayCluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.leftover_processes()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes left running: {[p.pid for p in left]}"


@pytest.fixture(scope="module")
def mlflow_server():
    root = short_tmp_dir("sfmlf-")
    server = LocalMlflowServer(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
