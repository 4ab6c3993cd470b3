"""Tests that need something the repository does not hold (real sample files, Chromium).

`require(...)` marks such a test. Where the prerequisite is missing the test skips with a message
saying how to enable it, except in CI (environment CI=true, as GitHub Actions and `.ci/run` set
it): CI is supposed to have every prerequisite, so there the test fails, naming what
is missing, and a green CI run cannot hide skipped tests. conftest.py applies the marks.
"""

from __future__ import annotations

import os

import pytest

MARK = "requires"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require(prerequisite: str, present: bool, enable: str) -> pytest.MarkDecorator:
    """A mark for a test or a module (`pytestmark = require(...)`) that needs `prerequisite`.

    `present` is decided when the module is imported; `enable` tells a person how to get it.
    """
    return getattr(pytest.mark, MARK)(prerequisite=prerequisite, present=present, enable=enable)


def enforce(item: pytest.Item) -> None:
    """Skip (outside CI) or fail (in CI) `item` if one of its required prerequisites is missing."""
    for mark in item.iter_markers(MARK):
        if mark.kwargs["present"]:
            continue
        prerequisite, enable = mark.kwargs["prerequisite"], mark.kwargs["enable"]
        if in_ci():
            pytest.fail(f"CI=true and a prerequisite is missing: {prerequisite}. CI must provide it: {enable}",
                        pytrace=False)
        pytest.skip(f"missing prerequisite: {prerequisite}. To run this test: {enable}")
