"""Shared test setup: tests marked with `prerequisites.require(...)` skip, or fail in CI, when what
they need is missing. Helper modules live in the `tests.helpers` package."""

import os

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# MLflow's and Ray's own variables would redirect the suite's runs (it honours both, as their tools
# do); tests that want them set them themselves.
CONNECTION_ENV = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
for _name in CONNECTION_ENV:
    os.environ.pop(_name, None)

from tests.helpers import prerequisites  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{prerequisites.MARK}(prerequisite, present, enable): needs something outside the repository"
    )


IMPLY_SLOW = ("cluster", "browser", "wheel")  # markers whose tests are slow by nature
SERVICE_FIXTURES = {"ray_cluster", "ray_head", "mlflow_server"}  # each starts real processes (tests/helpers/cluster.py)


def pytest_collection_modifyitems(config, items):
    """`-m "not slow"` leaves out every cluster, browser and wheel test without each saying so twice,
    and a test that starts services without a marker saying so stops the collection."""
    for item in items:
        if not item.get_closest_marker("slow") and any(item.get_closest_marker(name) for name in IMPLY_SLOW):
            item.add_marker(pytest.mark.slow)
    unmarked = [item.nodeid for item in items
                if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError(f"these tests start Ray or MLflow services but are not marked cluster (or "
                                f"browser), so the fast subset would run them: {unmarked}; add @pytest.mark.cluster")


@pytest.hookimpl(tryfirst=True)  # before any fixture of the test is set up
def pytest_runtest_setup(item):
    prerequisites.enforce(item)


@pytest.fixture
def one_thread():
    """One intra-op thread: the CPU is shared, and for tiny models or tensors waking a second thread
    per op costs more than the op (up to 50x on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_connection_env(monkeypatch):
    """Unset before every test: `mlflow.set_tracking_uri` (which tests call) sets MLFLOW_TRACKING_URI."""
    for name in CONNECTION_ENV:
        monkeypatch.delenv(name, raising=False)
