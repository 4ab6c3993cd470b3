"""Each run setting is declared once, on its RunSettings field, and everything else follows from it:
the flags of `suite run`/`tune`/`eval` with their help, the check of a value with an error naming
its flag or YAML file, the recipe, what `suite tune` prints; and core code never imports the CLI."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from suite import setting_kinds
from suite.cli import build_parser
from suite.commands.setting_flags import overrides_from_args
from suite.engine.config import resolve_settings
from suite.errors import UsageError
from suite.run_settings import EXECUTION_FIELDS, FIELDS, RECIPE_FIELDS, SETTINGS, RunSettings, flag, help_text
from suite.task import RECIPE_ONLY_FIELDS, Recipe
from suite.tune.report import run_command

ROOT = Path(__file__).resolve().parents[1]
TASK = ["--task", "cifar10", "--data", "synthetic"]

# A value each kind with limits refuses (the limits are read from the kind, not restated here).
BAD_VALUES = {
    setting_kinds.Integer: lambda kind: [str(kind.minimum - 1), "1.5"],
    setting_kinds.Number: lambda kind: ["0" if kind.positive else "-1", "nan"]
    + ([str(kind.at_most + 0.5)] if kind.at_most is not None else []),
    setting_kinds.Choice: lambda kind: ["no-such-mode"],
    setting_kinds.Supported: lambda kind: ["no-such-name"],
    setting_kinds.Name: lambda kind: ["  "],
}
ANY_VALUE_KINDS = (setting_kinds.Text, setting_kinds.DataRoot, setting_kinds.Derived)  # checked by whoever reads them


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


# ------------------------------------------------------------------ core code does not import the CLI


def _imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def test_no_core_module_imports_suite_commands():
    cli_layer = {ROOT / "suite" / "cli.py", ROOT / "suite" / "__main__.py"}
    offenders = {}
    for path in sorted((ROOT / "suite").rglob("*.py")):
        if path in cli_layer or (ROOT / "suite" / "commands") in path.parents:
            continue
        found = sorted(m for m in _imported_modules(ast.parse(path.read_text())) if m.startswith("suite.commands"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, f"core modules import the CLI layer: {offenders}"


def test_the_import_scan_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from suite.commands.run import VALUE_FLAGS\n")
    assert "suite.commands.run" in _imported_modules(tree)


# ------------------------------------------------------------------ flags and help from the fields


@pytest.mark.parametrize("command", ["run", "tune", "eval"])
def test_every_setting_the_command_takes_is_a_flag_with_the_fields_help(command):
    options = _subparser(command)._option_string_actions
    for name, setting in SETTINGS.items():
        if name == "task":
            continue  # each command words its own --task (required or not, read from a checkpoint)
        takes = setting.has_flag and command in setting.commands
        assert (flag(name) in options) == takes, f"{command} {flag(name)}: expected {'a' if takes else 'no'} flag"
        if takes:
            action = options[flag(name)]
            assert action.dest == name and action.help == help_text(name) and setting.help in action.help
    if command == "tune":
        assert "--workers" not in options and "--workers-per-trial" in options


def test_every_setting_but_the_derived_ones_is_in_suite_run_help():
    text = _subparser("run").format_help()
    derived = {name for name, s in SETTINGS.items() if not s.has_flag}
    assert derived == {"task", "recipe_deviations", "tracking_uri_source", "address_source"}
    for name in set(FIELDS) - derived:
        assert flag(name) in text, f"{flag(name)} is missing from `suite run --help`"
    assert "(default: 1)" in help_text("workers") and "$MLFLOW_TRACKING_URI" in help_text("tracking_uri")
    assert "training recipe (default: the task's recipe" in text


# ------------------------------------------------------------------ checks from the fields


def _bounded_settings():
    kinds_used = {type(s.kind) for s in SETTINGS.values()}
    unknown = kinds_used - set(BAD_VALUES) - set(ANY_VALUE_KINDS) - {setting_kinds.Switch}  # --x/--no-x: no bad flag
    assert not unknown, f"add a bad value for {unknown} to BAD_VALUES"
    bounded = [(name, s.kind) for name, s in SETTINGS.items() if s.has_flag and type(s.kind) in BAD_VALUES]
    return [(name, bad) for name, kind in bounded for bad in BAD_VALUES[type(kind)](kind)]


@pytest.mark.parametrize("name, bad", _bounded_settings())
def test_a_bad_flag_value_of_each_bounded_setting_is_refused_naming_the_flag(name, bad):
    args = _subparser("run").parse_args([*TASK, flag(name), bad])
    with pytest.raises(UsageError, match=rf"^{re.escape(flag(name))} (must|is) "):
        resolve_settings(args.task, overrides_from_args(args))


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if s.has_flag and type(s.kind) not in ANY_VALUE_KINDS])
def test_a_bad_yaml_value_of_each_checked_setting_is_refused_naming_the_file(tmp_path, name):
    kind = SETTINGS[name].kind
    bad = "maybe" if isinstance(kind, setting_kinds.Switch) else BAD_VALUES[type(kind)](kind)[0]
    file = tmp_path / "run.yaml"
    file.write_text(yaml.safe_dump({name: bad}))
    with pytest.raises(UsageError, match=rf"^{name} in {re.escape(str(file))} (must|is) "):
        resolve_settings("cifar10", {"data": "synthetic"}, file)


def test_switches_take_yes_and_no_from_the_command_line():
    args = _subparser("run").parse_args([*TASK, "--warmup-prefix", "--no-download"])
    settings = resolve_settings(args.task, overrides_from_args(args))
    assert (settings.warmup_prefix, settings.download, settings.sched_on_updates) == (True, False, False)


# ------------------------------------------------------------------ the recipe, the hash, `suite tune`'s command


def test_the_recipe_is_the_recipe_settings_with_their_defaults():
    recipe_fields = {f.name: f.default for f in dataclasses.fields(Recipe)}
    assert list(recipe_fields) == [*RECIPE_FIELDS, *(name for name, _, _ in RECIPE_ONLY_FIELDS)]
    assert all(recipe_fields[name] is FIELDS[name].default for name in RECIPE_FIELDS)
    assert {"lr", "mixup_off_epoch", "warmup_lr"} <= set(RECIPE_FIELDS) and "seed" not in RECIPE_FIELDS


def test_the_config_hash_leaves_out_the_same_settings_as_before():
    assert set(EXECUTION_FIELDS) == {
        "seed", "workers", "gpus_per_worker", "cpus_per_worker", "loader_workers", "max_failures", "address",
        "tracking_uri", "experiment", "download", "data", "storage_path", "tracking_uri_source", "address_source",
    }  # fmt: skip
    settings = resolve_settings("cifar10", {"data": "synthetic"})
    assert set(settings.hashed_fields()) == set(FIELDS) - set(EXECUTION_FIELDS) - {"recipe_deviations"}
    assert "skip_corrupt" in settings.hashed_fields()


def test_the_best_trials_command_gives_every_run_flag_back():
    given = {"data": "synthetic", "epochs": "3", "warmup_prefix": True, "sched_on_updates": False, "skip_corrupt": True}
    settings = resolve_settings("cifar10", given)
    flagged = {n: getattr(settings, n) for n, s in SETTINGS.items() if s.has_flag and "run" in s.commands}
    command = run_command("cifar10", {k: v for k, v in flagged.items() if k != "address"}, {"lr": 0.00123})
    assert "--no-sched-on-updates" in command and "--skip-corrupt" in command
    args = build_parser().parse_args(shlex.split(command)[3:])
    again = resolve_settings(args.task, overrides_from_args(args))
    assert {n: getattr(again, n) for n in flagged} == {**flagged, "lr": 0.00123}


def test_run_settings_round_trip_through_config_yaml():
    settings = resolve_settings("cifar10", {"data": "synthetic"})
    assert RunSettings.from_dict(yaml.safe_load(settings.to_yaml())) == settings
    assert list(yaml.safe_load(settings.to_yaml())) == list(FIELDS)


# ------------------------------------------------------------------ adding a setting is adding a field

NEW_FIELD = '    toy_decay: float = recipe(Number(at_most=1), "P", "a setting only this test declares", default=0.25, tunable=True)\n'
NEW_SETTING_PROBE = r"""
import contextlib, io, json, sys
from suite.cli import build_parser
from suite.commands.setting_flags import overrides_from_args
from suite.engine.config import resolve_settings
from suite.errors import UsageError
from suite.run_settings import TUNABLE
from suite.task import Recipe

def help_of(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args([command, "--help"])
    return out.getvalue()

def resolve(*flags, config=None):
    args = build_parser().parse_args(["run", "--task", "cifar10", "--data", "synthetic", *flags])
    return resolve_settings(args.task, overrides_from_args(args), config)

try:
    resolve("--toy-decay", "2")
    refused = None
except UsageError as err:
    refused = str(err)
print(json.dumps({
    "run_help": help_of("run"), "tune_help": help_of("tune"), "refused": refused,
    "recipe_default": Recipe.__dataclass_fields__["toy_decay"].default,
    "from_recipe": resolve().toy_decay, "from_flag": resolve("--toy-decay", "0.5").toy_decay,
    "from_file": resolve(config=sys.argv[1]).toy_decay,
    "hashed": "toy_decay" in resolve().hashed_fields(), "tunable": "toy_decay" in TUNABLE,
}))
"""


def test_a_new_setting_is_one_field_and_gets_its_flag_check_and_recipe(tmp_path):
    """The README's contributor claim, run: a copy of the package whose RunSettings has one more
    field (and nothing else changed) takes the flag, shows its help, refuses a bad value naming the
    flag, reads it from the recipe and a YAML file, and hashes and tunes it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "build")
    for package in ("suite", "tasks"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    source = (tmp_path / "suite" / "run_settings.py").read_text()
    anchor = "    seed: int = builtin("
    assert source.count(anchor) == 1, "run_settings.py changed; pick another line to add the field before"
    (tmp_path / "suite" / "run_settings.py").write_text(source.replace(anchor, NEW_FIELD + anchor))
    config = tmp_path / "run.yaml"
    config.write_text("toy_decay: 0.75\n")
    env = {**os.environ, "SUITE_NATIVE_KERNELS": "0", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", NEW_SETTING_PROBE, str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    for command in ("run_help", "tune_help"):
        assert re.search(r"--toy-decay P\s+a setting only this test declares", seen[command]), seen[command]
    assert seen["refused"] is not None and seen["refused"].startswith("--toy-decay must be "), seen["refused"]
    assert (seen["recipe_default"], seen["from_recipe"], seen["from_flag"], seen["from_file"]) == (0.25, 0.25, 0.5, 0.75)
    assert seen["hashed"] and seen["tunable"]
