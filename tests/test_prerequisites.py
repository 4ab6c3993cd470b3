"""prerequisites.require: a missing prerequisite skips with how to get it, and fails under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# The inner tests skip; these do not (so the README's list of tests that can skip leaves this file out).
TESTS = """
from tests.helpers.prerequisites import require as needs

@needs("a unicorn", False, "ask the zoo for one")
def test_needs_a_unicorn():
    pass

@needs("a horse", True, "buy one")
def test_has_a_horse():
    pass
"""


@pytest.fixture
def suite_of_two(pytester):
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())  # the real hooks
    pytester.makepyfile(TESTS)
    return pytester


def test_outside_ci_a_missing_prerequisite_skips_saying_how_to_enable_it(suite_of_two, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = suite_of_two.runpytest_inprocess("-ra")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*missing prerequisite: a unicorn. To run this test: ask the zoo for one*"])


def test_in_ci_a_missing_prerequisite_fails_naming_it(suite_of_two, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = suite_of_two.runpytest_inprocess("-ra")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*CI=true and a prerequisite is missing: a unicorn. CI must provide it: ask the zoo*"])
