"""The generated page and its MLflow run as a person sees them: headless Chromium, a real MLflow server.

The suite's experiments open on their runs table (the link the suite prints). Needs Chromium:
skips without it, fails without it in CI (see prerequisites.py).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from suite import schema, tracking
from suite.leaderboard import generate_leaderboards
from tests.helpers.prerequisites import require
from tests.helpers.ports import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    require("Chromium (chromium or chromium-browser on PATH)", CHROMIUM is not None,
            "install Debian's chromium package (apt-get install -y chromium), as .ci/run does"),
]
SERVER_START_TIMEOUT_S = 240  # mlflow server migrates a fresh sqlite store first: slow on a busy 2-core box


def _get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def dump_dom(url: str, profile: Path, budget_ms: int = 5000) -> str:
    """The DOM after the page's scripts ran, from a fresh headless Chromium profile."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"chromium failed on {url}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log_file = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", tracking.sqlite_uri(root / "mlflow.db"),
            "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job-runner process
        start_new_session=True,  # its own process group: uvicorn and the job runner stop with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                if _get(url + "/health", timeout=2) == b"OK":
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log_file.close()


@pytest.fixture(scope="module")
def published(mlflow_server, tmp_path_factory):
    """Runs logged through the server, then the boards generated from it and published to it."""
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = [  # (model, T, data, seed, best top-1, energy)
        ("spikformer-4-384", 4, "real:abc", 0, 92.0, 1.0),
        ("spikformer-4-384", 4, "real:abc", 1, 94.0, 1.0),
        ("spikformer-2-384", 4, "real:abc", 0, 95.5, 2.0),
        ("spikformer-2-256", 2, "real:abc", 0, 85.0, 0.4),
        ("spikformer-1-64", 2, schema.DATA_SYNTHETIC, 0, 11.0, 0.01),
    ]
    for model, steps, data, seed, best, energy in runs:
        run_id = tracking.create_run(
            mlflow_server,
            schema.DEFAULT_EXPERIMENT,
            run_name=f"{model}-s{seed}",
            tags={
                schema.TAG_KIND: "run", schema.TAG_TASK: "cifar10", schema.TAG_PROTOCOL: "default",
                schema.TAG_MODEL: model, schema.TAG_TIME_STEPS: steps, schema.TAG_DATA: data,
                schema.TAG_SEED: seed, schema.TAG_CONFIG_HASH: f"{model}-{steps}-{data}",
            },
            params={"epochs": 2},
        )
        client.log_metric(run_id, schema.M_BEST_TOP1, best, step=1)
        client.log_metric(run_id, schema.M_ENERGY, energy, step=1)
        client.set_terminated(run_id)
    out = tmp_path_factory.mktemp("boards")
    return generate_leaderboards(out, tracking_uri=mlflow_server, task="cifar10")


@pytest.fixture(scope="module")
def page_server(published):
    handler = functools.partial(_QuietHandler, directory=str(published.html_path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


def _table_models(dom: str, table_id: str) -> list[str]:
    table = dom.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [re.findall(r'<td class="text" data-sort="([^"]*)"', row)[0] for row in body.split("<tr")[1:]]


def test_board_page_renders_sorts_and_plots_in_chromium(published, page_server, tmp_path):
    dom = dump_dom(f"{page_server}/index.html", tmp_path / "profile-1")
    assert dom.count('data-sortable="ready"') == 3  # real, published, synthetic tables: the script ran
    assert _table_models(dom, "cifar10_default-real") == ["spikformer-2-384", "spikformer-4-384", "spikformer-2-256"]
    assert "93.00 ± 1.41 (n=2)" in dom
    assert _table_models(dom, "cifar10_default-synthetic") == ["spikformer-1-64"]
    plot = dom.split('id="plot-cifar10_default-energy"', 1)[1].split("</svg>", 1)[0]
    assert plot.count('class="point real on-front"') == 3 and 'class="pareto-front"' in plot
    assert plot.count('class="point synthetic"') == 1
    assert 'id="plot-cifar10_default-steps"' in dom

    # A sort requested in the URL (what a header click writes there) is applied by the page's script.
    sorted_dom = dump_dom(f"{page_server}/index.html#sort=cifar10_default-real:top1:asc", tmp_path / "profile-2")
    assert _table_models(sorted_dom, "cifar10_default-real") == ["spikformer-2-256", "spikformer-4-384", "spikformer-2-384"]
    header = sorted_dom.split('id="cifar10_default-real"', 1)[1].split('data-key="top1"', 1)[1].split(">", 1)[0]
    assert 'aria-sort="ascending"' in header


def test_leaderboard_run_and_page_are_reachable_in_mlflow(published, mlflow_server, tmp_path):
    run = MlflowClient(tracking_uri=mlflow_server).get_run(published.run_id)
    artifact = f"{mlflow_server}/get-artifact?run_uuid={published.run_id}&path="
    assert _get(artifact + "index.html") == published.html_path.read_bytes()
    assert _get(artifact + "boards/cifar10_default.csv") == (published.html_path.parent / "cifar10_default.csv").read_bytes()

    run_page = dump_dom(
        f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{published.run_id}",
        tmp_path / "profile-ui",
        budget_ms=30000,
    )
    assert "leaderboard-cifar10" in run_page and schema.LEADERBOARD_EXPERIMENT in run_page
    artifacts_page = dump_dom(
        f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{published.run_id}/artifacts/index.html",
        tmp_path / "profile-artifacts",
        budget_ms=30000,
    )
    assert "<iframe" in artifacts_page  # MLflow shows the HTML artifact inline
    for entry in ("index.html", "boards", "tables"):
        assert entry in artifacts_page


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_suite_experiments_open_on_their_runs_table(published, mlflow_server, tmp_path):
    """The link the suite prints opens MLflow's training view on the runs, not the GenAI overview."""
    client = MlflowClient(tracking_uri=mlflow_server)
    for name, a_run in ((schema.DEFAULT_EXPERIMENT, "spikformer-4-384-s0"), (schema.LEADERBOARD_EXPERIMENT, "leaderboard-cifar10")):
        experiment = client.get_experiment_by_name(name)
        assert experiment.tags[tracking.TAG_EXPERIMENT_KIND] == tracking.EXPERIMENT_KIND_TRAINING
        url = tracking.experiment_url(mlflow_server, experiment.experiment_id)
        assert tracking.ui_command(mlflow_server, experiment.experiment_id) == f"open {url} in a browser"
        text = _visible_text(dump_dom(url, tmp_path / f"profile-{experiment.experiment_id}", budget_ms=30000))
        assert "Run Name" in text and a_run in text and "matching run" in text, text[:3000]  # the runs table
        assert "Detect Issues" not in text  # not the GenAI traces overview
