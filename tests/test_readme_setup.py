"""README's set-up section against pyproject.toml and the tests: the extras it lists exist and the
test command installs them, its pins satisfy the declared ranges, and every test that can skip on
a fresh machine is named there with how to enable it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def setup_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Set up and run"):text.index("## Using it")]


def commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", setup_section(), re.S)


def test_the_test_command_installs_every_feature_extra_and_the_readme_names_each():
    extras = PROJECT["optional-dependencies"]
    features = set(extras) - {"test"}
    (own,) = [Requirement(r) for r in extras["test"] if Requirement(r).name == PROJECT["name"]]
    assert own.extras == features  # `.[test]` brings every feature's packages: no test lacks one
    assert "'.[test]'" in commands()[1]
    section = setup_section()
    for extra in features:
        assert f"`{extra}` for " in section, f"README's set-up section does not say what the {extra!r} extra adds"


def test_readme_pins_lie_inside_the_declared_ranges_and_state_the_tested_minors():
    declared = {Requirement(r).name: Requirement(r).specifier for r in PROJECT["dependencies"]}
    for command in commands():
        for name, version in re.findall(r"\b(torch|torchvision)==([\d.]+)", command):
            assert declared[name].contains(version), f"README installs {name}=={version}, outside {declared[name]}"
    section = " ".join(setup_section().split())
    for name, label in (("torch", "torch"), ("torchvision", "torchvision"), ("ray", "Ray")):
        upper = next(s.version for s in declared[name] if s.operator == "<")
        major, minor = upper.split(".")[:2]
        assert f"{label} {major}.{int(minor) - 1}" in section, f"README does not state the tested {name} minor"


def test_every_test_that_can_skip_on_a_fresh_machine_is_named_with_how_to_enable_it():
    section = " ".join(setup_section().split())
    sources = {path.name: path.read_text() for path in (ROOT / "tests").glob("test_*.py")}
    prerequisites = sorted(name for name, text in sources.items() if re.search(r"\brequire\(|needs_real_samples\(", text))
    assert prerequisites, "no test declares a prerequisite: this check lost its subject"
    missing = [name for name in prerequisites if f"`tests/{name}`" not in section]
    assert missing == [], f"README's set-up section does not name these tests that can skip: {missing}"
    for how in ("sudo apt-get install -y chromium", "export SUITE_REAL_SAMPLES=", "pip install triton"):
        assert how in section
    if any("pytest.mark.cuda" in text for text in sources.values()):
        assert "`pytest -m cuda`" in section


def test_every_registered_marker_is_explained_in_the_set_up_section():
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    names = [line.split(":")[0] for line in markers]
    assert {"slow", "cluster", "browser"} <= set(names)
    section = " ".join(setup_section().split())
    assert '`pytest -m "not slow"`' in section.replace(".venv/bin/python -m ", "")
    assert [name for name in names if f"`{name}`" not in section] == []
