"""`suite bench`: runs both implementations in worker processes and reports what it promises
(a tiny model and one step: these tests check the report, never the timings)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from suite.bench.rates import flops_per_sample, matmul_gflops
from suite.bench.runner import format_report, merge_rounds, run_worker
from suite.bench.spec import BenchSpec
from suite.bench.timing import time_call
from suite.errors import SuiteError

RESULT_FIELDS = {
    "impl", "mode", "batch_size", "threads", "step_s", "samples_per_s", "peak_mem_mb", "peak_rss_mb",
    "flops_per_sample", "achieved_gflops", "matmul_gflops", "share_of_matmul", "params",
}


def run_cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "suite", "bench", *args], capture_output=True, text=True, timeout=timeout
    )


def tiny_bench_report(tmp_path, *args) -> tuple[dict, str]:
    """(JSON report, printed table) of a one-block model in both modes beside spikingjelly."""
    out = tmp_path / "bench.json"
    proc = run_cli(
        "--model", "spikformer-1-32", "--task", "cifar10", "--mode", "both", "--compare", "spikingjelly",
        "--warmup", "1", "--json", str(out), *args,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_bench_compare_spikingjelly_both_modes_writes_the_json_report(tmp_path):
    report, table = tiny_bench_report(tmp_path, "--batch-size", "2", "--steps", "1", "--threads", "1")
    assert report["model"] == "spikformer-1-32" and report["compare"] == ["spikingjelly"]
    assert report["machine"]["threads"] == 1
    assert report["machine"]["device"] == "cpu" and report["machine"]["gpu"] is None
    assert report["matmul_gflops"]["fp32"] > 0
    assert set(report["modes"]) == {"train", "infer"}
    for mode, entry in report["modes"].items():
        suite, peer = entry["results"]["suite"], entry["results"]["spikingjelly"]
        for result in (suite, peer):
            assert RESULT_FIELDS <= set(result), RESULT_FIELDS - set(result)
            assert result["mode"] == mode and result["batch_size"] == 2 and result["threads"] == 1
            assert result["samples_per_s"] > 0 and result["peak_mem_mb"] >= 0 and result["peak_rss_mb"] > 100
            assert result["achieved_gflops"] > 0 and 0 < result["share_of_matmul"]
            assert result["peak_mem_mb"] == result["peak_host_mem_mb"] and "peak_cuda_mem_mb" not in result
        assert suite["params"] > 0 and peer["params"] > 0
        assert suite["flops_per_sample"] == peer["flops_per_sample"]  # both credited the same work
        ratio = entry["ratios"]["spikingjelly"]
        assert ratio["samples_per_s"] == pytest.approx(suite["samples_per_s"] / peer["samples_per_s"])
    assert report["modes"]["infer"]["results"]["suite"]["folded_batchnorms"] == 5 + 6
    assert report["modes"]["train"]["results"]["suite"]["flops_per_sample"] == pytest.approx(
        3 * report["modes"]["infer"]["results"]["suite"]["flops_per_sample"], rel=0.02
    )
    assert "samples/s" in table and "peak MB" in table and "of matmul" in table
    assert table.count("suite/spikingjelly") == 2


def test_nominal_flops_of_spikformer_4_384_on_cifar_match_the_published_figure():
    spec = BenchSpec(impl="suite", model="spikformer-4-384", task="cifar10", mode="infer", batch_size=2)
    # 22.3 GFLOP per training image (forward + backward) is 3x the forward's 7.42
    assert flops_per_sample(spec) / 1e9 == pytest.approx(7.42, rel=0.01)


def test_matmul_rate_is_measured():
    assert matmul_gflops(n=256, reps=2) > 0.1


@pytest.mark.slow
def test_a_failing_worker_raises_a_suite_error_naming_the_configuration():
    spec = BenchSpec(impl="suite", model="spikformer-1-33", task="cifar10", mode="train", batch_size=2, steps=1)
    with pytest.raises(SuiteError, match=r"benchmark worker suite/train failed: .*spikformer-1-33"):
        run_worker(spec, timeout_s=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "resnet-50"], "unknown model 'resnet-50'"),
        (["--model", "sew-resnet-18"], "unknown model 'sew-resnet-18' (names look like 'spikformer-4-384')"),  # Spikformer's LIF paths only
        (["--task", "mnist"], "mnist"),
        (["--json", "/nonexistent-folder/x.json"], "does not exist"),
        (["--batch-size", "0"], "must be >= 1"),
        (["--amp", "fp16"], "invalid choice"),
        (["--device", "tpu"], "invalid choice"),
    ],
)
def test_bad_arguments_fail_fast_with_a_clear_message(args, message):
    proc = run_cli(*args, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_bench_spec_rejects_bad_values_and_round_trips_json():
    spec = BenchSpec(impl="spikingjelly", model="spikformer-4-384", task="cifar10", mode="infer", batch_size=64)
    assert BenchSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="mode 'eval'"):
        BenchSpec(impl="suite", model="m", task="t", mode="eval", batch_size=1)
    with pytest.raises(ValueError, match="batch size"):
        BenchSpec(impl="suite", model="m", task="t", mode="train", batch_size=0)
    with pytest.raises(ValueError, match="device 'tpu' not in"):
        BenchSpec(impl="suite", model="m", task="t", mode="train", batch_size=1, device="tpu")
    assert BenchSpec.from_json(BenchSpec(**{**dataclasses.asdict(spec), "device": "cuda"}).to_json()).device == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_cuda_without_cuda_fails_in_one_line_before_any_work():
    proc = run_cli("--device", "cuda", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m suite bench: error: --device cuda: device 'cuda' requested but torch.cuda.is_available() "
        "is False on this machine"
    ]


def test_cpu_steps_are_timed_on_the_host_clock():
    calls = []
    seconds = time_call(lambda: calls.append(sum(range(10000))), "cpu")
    assert calls == [sum(range(10000))] and 0 < seconds < 60


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_on_cuda_times_with_events_and_reports_cuda_memory(tmp_path):
    report, table = tiny_bench_report(tmp_path, "--device", "cuda", "--batch-size", "4", "--steps", "2")
    assert report["machine"]["device"] == "cuda" and report["machine"]["gpu"]
    for entry in report["modes"].values():
        for result in entry["results"].values():
            assert result["peak_mem_mb"] == result["peak_cuda_mem_mb"] > 0 and result["samples_per_s"] > 0
    assert "CUDA events" in table


def test_report_table_shows_each_run_and_the_ratio():
    result = dict(batch_size=32, samples_per_s=8.0, step_s=4.0, peak_mem_mb=2000.0, achieved_gflops=178.0,
                  share_of_matmul=0.95, flops_per_sample=22.3e9)
    peer = dict(result, samples_per_s=6.4, step_s=5.0, peak_mem_mb=5000.0, achieved_gflops=142.7, share_of_matmul=0.77)
    report = {
        "model": "spikformer-4-384", "task": "cifar10", "amp": "off", "matmul_gflops": {"fp32": 186.0},
        "machine": {"threads": 2, "cpu_capability": "AVX512", "torch": "2.x", "load_avg_1m": 1.5},
        "modes": {"train": {"results": {"suite": result, "spikingjelly": peer},
                            "ratios": {"spikingjelly": {"samples_per_s": 1.25, "peak_mem": 0.4}}}},
    }
    table = format_report(report)
    assert "fp32 186 GFLOP/s" in table and "load average at start 1.50" in table
    assert "1.25x" in table and "0.40x" in table and "95%" in table
    assert "train 22.30" in table and "CUDA events" not in table
    report["machine"]["gpu"] = "NVIDIA H200"
    assert "on NVIDIA H200, steps timed with CUDA events, peak MB from the CUDA allocator" in format_report(report)


def test_rounds_pool_their_steps_and_keep_the_highest_peak():
    run = dict(batch_size=8, step_s=2.0, step_s_all=[2.0, 2.0, 3.0], samples_per_s=4.0, peak_mem_mb=100.0,
               peak_rss_mb=900.0, warmup_s=5.0, peak_cuda_mem_mb=100.0, peak_host_mem_mb=50.0)
    other = dict(run, step_s_all=[1.0, 1.0, 1.5], step_s=1.0, samples_per_s=8.0, peak_mem_mb=120.0, peak_rss_mb=950.0,
                 peak_cuda_mem_mb=120.0, peak_host_mem_mb=40.0)
    merged = merge_rounds([run, other])
    assert merged["step_s"] == 1.75 and merged["samples_per_s"] == pytest.approx(8 / 1.75)
    assert merged["peak_mem_mb"] == 120.0 and merged["peak_rss_mb"] == 950.0 and merged["rounds"] == 2
    assert merged["peak_cuda_mem_mb"] == 120.0 and merged["peak_host_mem_mb"] == 50.0
    assert merge_rounds([run])["step_s"] == 2.0
