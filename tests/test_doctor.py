"""`suite doctor --gpu`: the dry run lists the steps, a machine without CUDA gets one line and exit
0, and the parts of the check that run on a CPU do (training steps, the step runner, the MLflow
read-back, the bench summary, the subprocess commands' flags)."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest
import torch

from suite import schema
from suite.cli import build_parser
from suite.doctor import gpu
from suite.doctor.training import training_check


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "suite", "doctor", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_lists_every_step_and_the_commands_it_would_run(tmp_path):
    proc = run_cli("--gpu", "--dry-run", "--work-dir", str(tmp_path / "check"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"suite doctor --gpu would run, in {tmp_path / 'check'}:"
    assert lines[1].split() == ["step", "what", "it", "checks"]  # the table's header
    names = [line.split()[0] for line in lines[2:] if not line.startswith(" ")]
    assert names == ["cuda_tests", "triton_lif", "train_fp16", "train_bf16", "bench", "ray_run"]
    text = proc.stdout
    assert "-m pytest" in text and "-m cuda" in text
    assert "bench --compare spikingjelly --device cuda" in text
    assert "run --task cifar10 --data synthetic" in text and "--workers 1 --gpus-per-worker 1" in text
    assert not (tmp_path / "check").exists()  # a dry run writes nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_without_cuda_the_real_command_says_so_in_one_line_and_exits_0(tmp_path):
    proc = run_cli("--gpu", "--work-dir", str(tmp_path / "check"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "suite doctor --gpu: no CUDA device here (torch.cuda.is_available() is False); nothing to check"
    ]
    assert proc.stderr == ""


def test_doctor_without_a_check_is_a_usage_error():
    proc = run_cli()
    assert proc.returncode == 2 and "choose what to check: --gpu" in proc.stderr


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_training_check_on_a_tiny_model_on_cpu(precision):
    result = training_check("spikformer-1-32", precision, "cpu", steps=6, batch_size=8, img_size=16,
                            time_steps=2, lr=3e-3)
    assert len(result["losses"]) == 6 and result["finite"] and result["falling"] and result["ok"]
    assert result["losses"][-1] < result["losses"][0]
    assert (result["final_loss_scale"] is not None) == (precision == "fp16")


def test_training_check_flags_a_loss_that_does_not_fall():
    result = training_check("spikformer-1-32", "bf16", "cpu", steps=4, batch_size=8, img_size=16, time_steps=2, lr=0.0)
    assert result["finite"] and not result["falling"] and not result["ok"]


def test_a_failing_step_is_reported_and_the_next_still_runs(tmp_path):
    def broken(ctx):
        raise RuntimeError("no kernel image is available for execution on the device")

    steps = (gpu.Step("broken", "raises", broken), gpu.Step("fine", "passes", lambda ctx: {"ok": True, "value": 3}))
    report = gpu.run_steps(gpu.Context(work_dir=tmp_path), steps)
    assert report["steps"]["broken"]["ok"] is False
    assert "RuntimeError: no kernel image" in report["steps"]["broken"]["error"]
    assert report["steps"]["fine"] == {"ok": True, "value": 3, "seconds": report["steps"]["fine"]["seconds"]}
    assert report["ok"] is False and report["within_budget"]


def test_the_subprocess_commands_parse_as_the_cli_reads_them(tmp_path):
    from suite.commands.run import overrides_from_args
    from suite.engine.config import resolve_settings

    ctx = gpu.Context(work_dir=tmp_path)
    bench = build_parser().parse_args(gpu.bench_command(ctx)[3:])
    assert bench.device == "cuda" and bench.compare == ["spikingjelly"] and bench.mode == "both"
    run = build_parser().parse_args(gpu.run_command(ctx)[3:])
    settings = resolve_settings(run.task, overrides_from_args(run), None)
    assert (settings.workers, settings.gpus_per_worker, settings.epochs, settings.data) == (1, 1, 1, "synthetic")


def test_finished_run_reads_status_and_metrics_back_from_mlflow(tmp_path):
    ctx = gpu.Context(work_dir=tmp_path)
    uri = gpu.tracking_uri(ctx)
    assert gpu.finished_run(uri, "doctor-gpu")["status"] is None
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("doctor-gpu", artifact_location=str(tmp_path / "a")))
    client.log_metric(run.info.run_id, "val_top1", 0.5)
    client.set_tag(run.info.run_id, schema.TAG_DEVICE, "cuda:NVIDIA H200 x1")
    client.set_terminated(run.info.run_id, "FINISHED")
    found = gpu.finished_run(uri, "doctor-gpu")
    assert found == {"run_id": run.info.run_id, "status": "FINISHED", "metrics": {"val_top1": 0.5},
                     "device": "cuda:NVIDIA H200 x1"}


def test_bench_summary_keeps_throughput_cuda_memory_and_ratios():
    result = {"samples_per_s": 900.0, "peak_cuda_mem_mb": 1200.0, "batch_size": 32, "step_s": 0.03}
    report = {"machine": {"gpu": "NVIDIA H200"}, "modes": {"train": {
        "results": {"suite": result, "spikingjelly": dict(result, samples_per_s=600.0)},
        "ratios": {"spikingjelly": {"samples_per_s": 1.5, "peak_mem": 1.0}}}}}
    summary = gpu.bench_summary(report)
    assert summary["gpu"] == "NVIDIA H200"
    assert summary["modes"]["train"]["suite"] == {"samples_per_s": 900.0, "peak_cuda_mem_mb": 1200.0, "batch_size": 32}
    assert summary["modes"]["train"]["ratios"]["spikingjelly"]["samples_per_s"] == 1.5
