"""What the CLI prints: one table layout for every command (suite.table), and the program name the
user typed in usage lines and in the commands it suggests."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from suite import cli
from suite.table import format_table

ROOT = Path(__file__).resolve().parents[1]


def column_starts(header: str) -> list[int]:
    """Where each column of a table starts: the header's words are two or more spaces apart."""
    return [0] + [m.end() for m in re.finditer(r"\S {2,}(?=\S)", header)]


def assert_one_layout(table: str, columns: list[str]) -> None:
    """The header names `columns` in order, and every row's cells start where their header does."""
    header, *rows = table.splitlines()
    starts = column_starts(header)
    assert [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None])] == columns, header
    assert rows, table
    for row in rows:
        for start in starts[1:]:
            assert row[start - 1] == " " and row[start] != " ", f"cell not at column {start}:\n{table}"


def test_format_table_left_aligns_text_under_its_header_and_dashes_missing_cells():
    rows = [{"name": "spikformer-4-384", "params": 9324730, "top1": 95.19}, {"name": "s", "params": 12}]
    table = format_table(rows, ["name", "params", "top1"], formats={"params": "{:,}".format})
    assert table.splitlines() == [
        "name              params     top1",
        "spikformer-4-384  9,324,730  95.19",
        "s                 12         -",
    ]
    assert format_table([], ["a", "bb"]) == "a  bb"  # no rows: the header alone
    assert format_table([{"x": None, "y": float("nan")}], headers={"x": "X COL"}) == "X COL  y\n-      -"


def test_models_and_tasks_commands_print_one_layout(capsys):
    from suite.commands.models import COLUMNS as MODEL_COLUMNS
    from suite.commands.tasks import COLUMNS as TASK_COLUMNS

    assert cli.main(["models"]) == 0
    assert_one_layout(capsys.readouterr().out.split("\n\n")[0], MODEL_COLUMNS)
    assert cli.main(["tasks"]) == 0
    assert_one_layout(capsys.readouterr().out.split("\n\n")[0], TASK_COLUMNS)
    assert cli.main(["tasks", "--recipe", "cifar10"]) == 0
    assert_one_layout(capsys.readouterr().out.split("\n\n")[0], ["key", "value", "source"])


def test_jobs_trials_and_bench_tables_share_the_layout():
    from ray.job_submission import JobDetails, JobStatus, JobType

    from suite.bench.runner import format_report
    from suite.commands.jobs import format_jobs
    from suite.tune.report import format_trials

    jobs = [
        JobDetails(type=JobType.SUBMISSION, submission_id="raysubmit_2", status=JobStatus.RUNNING,
                   entrypoint="python -m suite run --task cifar10", start_time=1_700_000_100_000),
        JobDetails(type=JobType.SUBMISSION, submission_id="raysubmit_1", status=JobStatus.SUCCEEDED,
                   entrypoint="python -m suite tasks", start_time=1_700_000_000_000, end_time=1_700_000_050_000),
    ]  # fmt: skip
    listing = format_jobs(jobs)
    assert_one_layout(listing, ["JOB ID", "STATUS", "START", "END", "ENTRYPOINT"])
    assert listing.splitlines()[1].startswith("raysubmit_1  SUCCEEDED") and re.search(r"RUNNING .* - ", listing)

    trials = [
        {"trial_id": "a1", "run_id": "r1", "status": "FINISHED", "early_stopped": False,
         "params": {"lr": 0.00123456, "time_steps": 4}, "epochs": 3, "best_top1": 41.25},
        {"trial_id": "b2", "run_id": None, "status": "KILLED", "early_stopped": True,
         "params": {"lr": 0.01, "time_steps": 2}, "epochs": 1, "best_top1": None},
    ]  # fmt: skip
    table = format_trials(trials, ["lr", "time_steps"])
    assert_one_layout(table, ["trial", "status", "lr", "time_steps", "epochs", "best_top1", "mlflow run"])
    assert table.splitlines()[2].split("  ")[-1] == "-"  # no MLflow run

    result = dict(batch_size=32, samples_per_s=8.0, step_s=4.0, peak_mem_mb=2000.0, achieved_gflops=178.0,
                  share_of_matmul=0.95, flops_per_sample=22.3e9)
    report = {
        "model": "m", "task": "cifar10", "amp": "off", "matmul_gflops": {"fp32": 186.0},
        "machine": {"threads": 2, "cpu_capability": "AVX512", "torch": "2.x", "load_avg_1m": None},
        "modes": {"train": {"results": {"suite": result, "spikingjelly": dict(result, samples_per_s=6.4)},
                            "ratios": {"spikingjelly": {"samples_per_s": 1.25, "peak_mem": None}}}},
    }
    bench = format_report(report).split("\n\n")[1]
    assert_one_layout(bench, ["mode", "impl", "batch", "samples/s", "step ms", "peak MB", "GFLOP/s", "of matmul"])
    assert bench.splitlines()[3].split() == ["train", "suite/spikingjelly", "-", "1.25x", "-", "n/a", "-", "-"]


def test_no_command_pads_columns_by_hand():
    # str.ljust/rjust, or a width in a format spec: f"{x:11}", f"{x:>6.0f}", f"{x:<{w}}"
    padding = re.compile(r"\.[lr]just\(|:[<>^=]?[1-9]\d*(\.\d+)?[a-z%]?\}|:[<>^]\{")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "suite").rglob("*.py")
        if path.name != "table.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if padding.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "argv0, name",
    [("/venv/bin/suite", "suite"), ("suite", "suite"), ("/src/suite/__main__.py", "python -m suite"),
     ("/venv/bin/pytest", "python -m suite")],
)  # fmt: skip
def test_program_name_is_what_the_user_typed(argv0, name):
    assert cli.program_name(argv0) == name


def test_the_script_name_is_the_one_pyproject_installs():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {cli.SCRIPT: "suite.cli:main"}


def test_usage_and_suggested_commands_use_the_program_name(monkeypatch):
    from suite.commands.run import stopped_line
    from suite.engine.stop_signals import RunInterrupted

    stop = RunInterrupted(signal.SIGTERM)
    stop.run_id, stop.run_status = "abc123", "KILLED"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/suite", "run"])
    assert cli.build_parser().format_usage().startswith("usage: suite ")
    assert stopped_line(stop).endswith("continue it with: suite run --resume abc123")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "suite" / "__main__.py"), "run"])
    assert stopped_line(stop).endswith("continue it with: python -m suite run --resume abc123")


def test_python_m_suite_names_itself_so():
    done = subprocess.run([sys.executable, "-m", "suite", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m suite ")
