"""`suite tune`: search-space parsing and checks, the best-config command, and a real ASHA sweep
on synthetic data (embedded Ray, SQLite MLflow store) that is interrupted and resumed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from suite import schema
from suite.cli import build_parser, main
from suite.engine.run_logger import TAG_RESUMED_FROM_EPOCH
from suite.errors import UsageError
from suite.task import Task, TaskConfig
from suite.tune import space as sp
from suite.tune.runs import TAG_EARLY_STOPPED
from suite.tune.report import run_command
from tests.helpers.cluster import REPO_ROOT, base_env

TINY = [
    "--task", "cifar10", "--model", "spikformer-1-32", "--data", "synthetic", "--synthetic-size", "32",
    "--batch-size", "16", "--epochs", "2", "--amp", "off",
]  # fmt: skip


# -- search spaces ---------------------------------------------------------------------------------
def test_params_parse_into_checked_specs():
    assert sp.parse_param("lr=loguniform:1e-4:1e-2") == sp.ParamSpec("lr", "loguniform", (1e-4, 1e-2))
    assert sp.parse_param("time_steps=choice:2,4,6") == sp.ParamSpec("time_steps", "choice", (2, 4, 6))
    assert sp.parse_param("amp=grid:off,bf16").args == ("off", "bf16")
    assert sp.parse_param("warmup_epochs=randint:0:5").args == (0, 5)
    assert sp.parse_param("mixup=quniform:0:1:0.25").args == (0, 1, 0.25)


@pytest.mark.parametrize(
    "item, message",
    [
        ("lr=normal:0:1", "unknown distribution 'normal'"),
        ("time_steps=choice:", "choice has no values"),
        ("time_steps=grid: , ", "grid has no values"),
        ("lr=uniform:1e-2:1e-4", "an empty range"),
        ("lr=loguniform:0:1e-2", "loguniform needs LOW > 0"),
        ("lr=uniform:1e-4", "takes 2 numbers"),
        ("lr=uniform:a:b", "'a' is not a number"),
        ("warmup_epochs=randint:0.5:3", "randint bounds must be integers"),
        ("epochs=choice:1,2", "'epochs' cannot be tuned"),
        ("workers=choice:1,2", "'workers' cannot be tuned"),
        ("lr", "expected NAME=DIST:ARGS"),
        ("time_steps=choice:2,2", "lists a value twice"),
    ],
)
def test_bad_params_are_clear_errors(item, message):
    with pytest.raises(UsageError, match=message):
        sp.parse_param(item)


def test_tune_domains_match_the_specs():
    from ray.tune.search.sample import Categorical, Float, Integer

    domains = sp.to_tune(sp.parse_space(["lr=loguniform:1e-4:1e-2", "warmup_epochs=randint:0:5", "time_steps=choice:2,4"], "t"))
    assert isinstance(domains["lr"], Float) and (domains["lr"].lower, domains["lr"].upper) == (1e-4, 1e-2)
    assert isinstance(domains["warmup_epochs"], Integer) and domains["warmup_epochs"].upper == 6  # 5 included
    assert isinstance(domains["time_steps"], Categorical) and domains["time_steps"].categories == [2, 4]
    assert sp.grid_size(sp.parse_space(["amp=grid:off,bf16", "time_steps=grid:1,2,4"], "t")) == 6


def _task_with(extra: dict) -> Task:
    raw = {
        "name": "toy", "modality": "event", "num_classes": 10, "input_shape": [2, 32, 32], "stem": "dvs",
        "recipe": {"model": "spikformer-1-32", "time_steps": 4, "epochs": 1, "batch_size": 8, "lr": 1e-3,
                   "weight_decay": 0.01},
        "extra": extra,
    }  # fmt: skip
    return type("Toy", (Task,), {"config": TaskConfig.from_dict(raw)})()


def test_space_comes_from_params_else_the_task_else_the_modality_default():
    declared = _task_with({"search_space": {"lr": "uniform:1e-3:2e-3", "time_steps": "choice:4,8"}})
    space, origin = sp.resolve_space(declared, None)
    assert origin == "task 'toy' extra.search_space" and space["time_steps"].args == (4, 8)
    space, origin = sp.resolve_space(declared, ["lr=loguniform:1e-4:1e-2"])
    assert origin == "--param" and list(space) == ["lr"]
    space, origin = sp.resolve_space(_task_with({}), None)
    assert origin == "the event default" and space == sp.parse_space(sp.DEFAULT_SPACES["event"], "default")
    with pytest.raises(UsageError, match="extra.search_space is empty"):
        sp.resolve_space(_task_with({"search_space": {}}), None)
    with pytest.raises(UsageError, match="unknown distribution"):
        sp.resolve_space(_task_with({"search_space": {"lr": "gauss:1:2"}}), None)


@pytest.mark.parametrize(
    "extra_args, message",
    [
        (["--param", "lr=gauss:1:2"], "unknown distribution 'gauss'"),
        (["--param", "time_steps=choice:"], "choice has no values"),
        (["--param", "model=choice:spikformer-1-32,resnet-50"], "value 'resnet-50'"),
        (["--param", "label_smoothing=uniform:0.1:1.5"], "must be between 0 and 1, got 1.5"),
        (["--param", "time_steps=grid:1,2", "--search", "optuna"], "use choice instead"),
        (["--param", "lr=uniform:1e-4:1e-3", "--samples", "0"], "--samples must be at least 1"),
        (["--param", "lr=uniform:1e-4:1e-3", "--tracking-uri", "file:///tmp/mlruns"], "file store is not supported"),
    ],
)
def test_tune_rejects_bad_input_before_ray_starts(extra_args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    assert main(["tune", *TINY, *extra_args]) == 2
    assert message in capsys.readouterr().err


def test_optuna_search_without_optuna_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` meets when it is not installed
    assert main(["tune", *TINY, "--param", "lr=loguniform:1e-4:1e-2", "--search", "optuna"]) == 1
    error = capsys.readouterr().err
    assert "--search optuna needs the package of the suite's 'optuna' extra" in error
    assert error.rstrip().endswith("pip install 'spikformer-suite[optuna]'") and not (tmp_path / "ray_results").exists()


@pytest.mark.parametrize("search", ["random", "optuna"])
def test_tuner_uses_asha_on_best_top1_and_samples_inside_the_space(search):
    from ray.tune.schedulers import ASHAScheduler

    from suite.tune.sweep import SweepSpec, _tuner_parts
    from suite.tune.trial import SweepContext

    spec = SweepSpec(task="cifar10", base_settings={"epochs": 3, "seed": 0}, space={"lr": "loguniform:1e-4:1e-2",
                     "time_steps": "choice:2,4"}, space_origin="--param", samples=3, search=search)  # fmt: skip
    context = SweepContext("cifar10", {}, "p", "sweep-p", "sqlite:////tmp/x.db", "e", "/tmp", embedded=True)
    _, tune_config, run_config = _tuner_parts(spec, context, concurrency=2)
    assert isinstance(tune_config.scheduler, ASHAScheduler) and (tune_config.metric, tune_config.mode) == ("best_top1", "max")
    assert run_config.name == "sweep-p" and run_config.callbacks[0].parent_run_id == "p"
    searcher = tune_config.search_alg
    if search == "optuna":
        assert tune_config.max_concurrent_trials == 2
        searcher.set_search_properties("best_top1", "max", sp.to_tune(spec.parsed_space()))
        for i in range(5):
            config = searcher.suggest(f"t{i}")  # Optuna's own sampler, inside our bounds
            assert 1e-4 <= config["lr"] <= 1e-2 and config["time_steps"] in (2, 4)
    else:
        assert tune_config.max_concurrent_trials is None and searcher.max_concurrent == 2


def test_best_config_is_a_ready_to_paste_run_command():
    flags = {"model": "spikformer-1-32", "data": "synthetic", "epochs": "2", "amp": "off", "workers": "2",
             "download": True, "tracking_uri": "sqlite:////tmp/a b/mlflow.db"}  # fmt: skip
    command = run_command("cifar10", flags, {"lr": 0.00123456789, "time_steps": 4})
    assert command == (
        "python -m suite run --task cifar10 --model spikformer-1-32 --data synthetic --epochs 2 --amp off "
        "--workers 2 --download --tracking-uri 'sqlite:////tmp/a b/mlflow.db' --lr 0.00123456789 --time-steps 4"
    )
    import shlex

    args = build_parser().parse_args(shlex.split(command)[3:])
    assert (args.command, args.lr, args.time_steps, args.workers, args.download) == ("run", "0.00123456789", "4", "2", True)


def test_trial_runs_always_end_and_are_never_duplicated(tmp_path):
    from ray.tune.experiment import Trial

    from suite import tracking
    from suite.tune import runs
    from suite.tune.callback import TrialRunsCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = runs.create_parent_run(uri, "cb-test", run_name="sweep", tags={"suite.task": "cifar10"})
    run_of = {}
    for trial_id in ("a", "b", "c", "d", "e"):
        run_of[trial_id] = runs.get_or_create_trial_run(
            uri, "cb-test", parent_run_id=parent, sweep=runs.sweep_name(parent), trial_id=trial_id,
            run_name=trial_id, tags={}, params={"lr": 0.1})  # fmt: skip
    trials = {trial_id: Trial("run_trial", stub=True, trial_id=trial_id) for trial_id in run_of}
    # a resumed from its epoch-0 checkpoint: Tune counts 1 iteration, but it did both epochs
    trials["a"].update_last_result({"training_iteration": 1, schema.M_EPOCH: 1.0})
    trials["b"].update_last_result({"training_iteration": 1, schema.M_EPOCH: 0.0})  # ASHA stopped it after 1 of 2
    for epoch in (0, 1):  # e was resumed from its last epoch's checkpoint: nothing left to report
        tracking.client(uri).log_metric(run_of["e"], schema.M_EPOCH, float(epoch), step=epoch)
    callback = TrialRunsCallback(uri, parent, epochs=2)
    callback.on_trial_complete(0, [], trials["a"])
    callback.on_trial_complete(0, [], trials["b"])
    callback.on_trial_error(0, [], trials["c"])
    callback.on_trial_complete(0, [], trials["e"])
    for trial in trials.values():
        trial.set_status(Trial.TERMINATED)  # how Tune shows trials stopped by an interrupt, like d
    tracking.mark_status(uri, run_of["a"], "FAILED")  # a dying worker writing after the driver
    callback.on_experiment_end(list(trials.values()))

    found = runs.trial_runs(uri, parent)
    assert {k: found[k].info.status for k in found} == {
        "a": "FINISHED", "b": "FINISHED", "c": "FAILED", "d": "KILLED", "e": "FINISHED"}  # fmt: skip
    assert {k for k in found if found[k].data.tags.get(runs.TAG_EARLY_STOPPED) == "true"} == {"b"}
    assert found["c"].data.tags[tracking.TAG_ERROR] == "trial c failed"
    # A resumed trial continues its own run.
    again = runs.get_or_create_trial_run(uri, "cb-test", parent_run_id=parent, sweep=runs.sweep_name(parent),
                                         trial_id="d", run_name="d", tags={}, params={"lr": 0.1})
    assert again == run_of["d"] and runs.run_status(uri, again) == "RUNNING" and len(runs.trial_runs(uri, parent)) == 5


# -- a real sweep ----------------------------------------------------------------------------------
def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tune-test")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _logged_epochs(uri: str, run_id: str) -> list[int]:
    """The run's epoch metric, one entry per logging, in the order it was logged."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient(uri).get_metric_history(run_id, schema.M_EPOCH)
    return [int(m.value) for m in sorted(history, key=lambda m: (m.timestamp, m.step))]


@pytest.mark.slow
def test_asha_sweep_is_interrupted_then_resumed_into_one_parent_and_two_finished_trials(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = base_env(tmp_path / "home") | {"SUITE_HOME": str(tmp_path / "suite")}
    argv = [sys.executable, "-m", "suite", "tune", *TINY, "--samples", "2", "--scheduler", "asha",
            "--param", "lr=loguniform:1e-4:1e-2", "--param", "time_steps=choice:1,2", "--experiment", "tune-test",
            "--tracking-uri", uri]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        # Interrupt once both trials run and one has logged (so checkpointed) an epoch: the resume
        # must then continue that trial from its checkpoint, not start it again.
        while True:
            trials = [r for r in _runs(uri) if r.data.tags.get("suite.kind") == "trial"]
            if len(trials) == 2 and any(_logged_epochs(uri, r.info.run_id) for r in trials):
                break
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the trials never logged an epoch"
            time.sleep(0.2)
        first.send_signal(signal.SIGINT)  # as Ctrl-C: Tune saves the experiment and stops the trials
        assert first.wait(300) == 130
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    output = (tmp_path / "first.log").read_text()
    runs = _runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("suite.kind") == "sweep"]
    assert parent.info.status == "KILLED" and f"--resume sweep-{parent.info.run_id}" in output
    assert "2 trial(s), 2 at once, asha scheduler" in output  # concurrency sized to the 2 CPUs
    assert all(r.info.status != "RUNNING" for r in runs), [(r.info.run_id, r.info.status) for r in runs]

    resumed = subprocess.run(
        [sys.executable, "-m", "suite", "tune", "--resume", f"sweep-{parent.info.run_id}", "--tracking-uri", uri],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]

    runs = _runs(uri)
    parents = [r for r in runs if r.data.tags.get("suite.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("suite.kind") == "trial"]
    assert len(parents) == 1 and len(trials) == 2  # resuming created no second parent and no duplicate trial
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_id, r.info.status) for r in runs]
    parent = parents[0]
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert len({t.data.tags["suite.trial_id"] for t in trials}) == 2
    epochs = int(TINY[TINY.index("--epochs") + 1])
    for trial in trials:  # every epoch once and in order; all of them unless ASHA stopped the trial early (tagged)
        logged = _logged_epochs(uri, trial.info.run_id)
        early_stopped = trial.data.tags.get(TAG_EARLY_STOPPED) == "true"
        assert logged and logged == list(range(len(logged))), (trial.data.tags["suite.trial_id"], logged)
        assert early_stopped == (len(logged) < epochs), (trial.data.tags["suite.trial_id"], logged, early_stopped)
        assert "best_top1" in trial.data.metrics
    # The trial that had logged an epoch had its checkpoint committed (before the logging) and still
    # its last epoch and final model to write when interrupted: the resume continued it from there.
    assert any(TAG_RESUMED_FROM_EPOCH in t.data.tags for t in trials), [t.data.tags for t in trials]

    best_run = parent.data.tags["suite.best_run_id"]
    assert best_run in {t.info.run_id for t in trials}
    best_trial = next(t for t in trials if t.info.run_id == best_run)
    assert parent.data.metrics["best_top1"] == max(t.data.metrics["best_top1"] for t in trials)
    assert float(parent.data.params["best.lr"]) == pytest.approx(float(best_trial.data.params["lr"]))
    assert parent.data.params["best.time_steps"] == best_trial.data.params["time_steps"]

    command = resumed.stdout.split("train it with:\n", 1)[1].splitlines()[0].strip()
    assert command == parent.data.tags["suite.best_command"]
    import shlex

    args = build_parser().parse_args(shlex.split(command)[3:])
    assert args.command == "run" and float(args.lr) == pytest.approx(float(best_trial.data.params["lr"]))
