"""Shared test setup: tests import helper modules from this folder (e.g. official_reference), and
tests marked with `prerequisites.require(...)` skip, or fail in CI, when what they need is missing."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

import prerequisites  # noqa: E402  (found through the path entry above)
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{prerequisites.MARK}(prerequisite, present, enable): needs something outside the repository"
    )


@pytest.hookimpl(tryfirst=True)  # before any fixture of the test is set up
def pytest_runtest_setup(item):
    prerequisites.enforce(item)
