"""The run engine's parts without Ray: settings resolution, LR schedule, mixup/cutmix on 4-D and
5-D batches, checkpoints (weights_only, RNG round trip), the crash hook, and exact evaluation
under a real 2-process gloo group compared with one process on the same weights."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from suite.engine import checkpoint as ckpt
from suite.engine.config import RunSettings, resolve_settings
from suite.engine.evaluate import evaluate, shard_indices
from suite.engine.crash_injection import CRASH_EXIT_CODE, parse_crash_plan
from suite.engine.mixing import BatchMixer
from suite.engine.schedule import after_update, build_scheduler, set_position
from suite.errors import CorruptDataError, UnknownNameError, UsageError
from suite.task_registry import get_task
from suite.tracking import config_hash

# ------------------------------------------------------------------ settings


def test_defaults_come_from_the_task_recipe():
    recipe = get_task("cifar10").recipe
    settings = resolve_settings("cifar10", {"data": "synthetic"})
    assert (settings.model, settings.epochs, settings.batch_size) == (recipe.model, recipe.epochs, recipe.batch_size)
    assert (settings.lr, settings.weight_decay, settings.mixup) == (recipe.lr, recipe.weight_decay, recipe.mixup)
    assert settings.protocol == get_task("cifar10").protocols[0]
    # The recipe's CUDA fp16 falls back to off on CPU workers; an explicit request is an error.
    assert recipe.amp == "fp16" and settings.amp == "off"
    with pytest.raises(UsageError, match=r"^--amp fp16 needs CUDA"):
        resolve_settings("cifar10", {"data": "synthetic", "amp": "fp16"})
    assert resolve_settings("cifar10", {"data": "synthetic", "amp": "bf16"}).amp == "bf16"


def test_config_file_overrides_recipe_and_flags_override_file(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text(yaml.safe_dump({"epochs": 7, "lr": 0.01, "model": "spikformer-2-64", "mixup": 0}))
    settings = resolve_settings("cifar10", {"data": "synthetic", "lr": "0.002"}, file)
    assert (settings.epochs, settings.lr, settings.model, settings.mixup) == (7, 0.002, "spikformer-2-64", 0.0)
    # The stored config.yaml of a run is itself a valid --config file and resolves to the same settings.
    again = tmp_path / "again.yaml"
    again.write_text(settings.to_yaml())
    assert resolve_settings("cifar10", None, again) == settings


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": "0"}, "--epochs must be a positive integer, got 0"),
        ({"epochs": "two"}, "--epochs must be a positive integer, got 'two'"),
        ({"batch_size": "1.5"}, "--batch-size must be a positive integer, got '1.5'"),
        ({"lr": "-1"}, "--lr must be a positive number, got -1"),
        ({"lr": "nan"}, "--lr must be a finite number, got 'nan'"),
        ({"weight_decay": "-0.1"}, "--weight-decay must not be negative, got -0.1"),
        ({"label_smoothing": "1.5"}, "--label-smoothing must be between 0 and 1, got 1.5"),
        ({"amp": "fp8"}, "--amp must be one of off, bf16, fp16, got 'fp8'"),
        ({"max_failures": "-2"}, "--max-failures must be an integer >= -1, got -2"),
        ({"workers": "4", "batch_size": "2"}, "--batch-size (2) is the global batch size and must be at least --workers (4)"),
        ({"synthetic_size": "10", "data": "/nonexistent"}, "--synthetic-size applies only to --data synthetic"),
    ],
)
def test_bad_values_name_the_flag(overrides, message):
    with pytest.raises(UsageError) as err:
        resolve_settings("cifar10", {"data": "synthetic", **overrides})
    assert str(err.value) == message


def test_bad_config_files_are_named(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epochs: 3\nepocs: 4\n")
    with pytest.raises(UsageError, match=r"unknown\.yaml: unknown keys \['epocs'\]"):
        resolve_settings("cifar10", {"data": "synthetic"}, unknown)
    bad_value = tmp_path / "bad.yaml"
    bad_value.write_text("epochs: -3\n")
    with pytest.raises(UsageError, match=r"^epochs in .*bad\.yaml must be a positive integer, got -3$"):
        resolve_settings("cifar10", {"data": "synthetic"}, bad_value)
    with pytest.raises(UsageError, match=r"missing\.yaml: cannot be read"):
        resolve_settings("cifar10", {}, tmp_path / "missing.yaml")
    with pytest.raises(UnknownNameError, match="unknown task 'cifar11'"):
        resolve_settings("cifar11", {})


def test_config_hash_ignores_seed_and_execution_settings():
    base = resolve_settings("cifar10", {"data": "synthetic", "epochs": "3"})
    other_seed = resolve_settings("cifar10", {"data": "synthetic", "epochs": "3", "seed": "5", "workers": "2"})
    other_lr = resolve_settings("cifar10", {"data": "synthetic", "epochs": "3", "lr": "0.1"})
    assert config_hash(base.hashed_fields()) == config_hash(other_seed.hashed_fields())
    assert config_hash(base.hashed_fields()) != config_hash(other_lr.hashed_fields())
    assert RunSettings.from_dict(base.to_dict()) == base


# ------------------------------------------------------------------ schedule (official recipes: test_recipes.py)


def _lrs(scheduler, optimizer, epochs, steps):
    """The LR of every update, driven as train_one_epoch drives the scheduler."""
    lrs = []
    for epoch in range(epochs):
        set_position(scheduler, epoch, steps)
        for step in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            after_update(scheduler, epoch, step, steps)
    return lrs


def test_per_update_cosine_warms_up_then_anneals_to_min_lr():
    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1e-3)
    scheduler = build_scheduler(optimizer, epochs=10, cooldown_epochs=0, warmup_epochs=2, warmup_lr=1e-6, min_lr=1e-5,
                                steps_per_epoch=5, on_updates=True)
    lrs = _lrs(scheduler, optimizer, 10, 5)
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[5] == pytest.approx(1e-6 + (1e-3 - 1e-6) * 5 / 10)  # linear warm-up over 10 updates
    # timm counts the cosine from update 0 (warm-up inside it): at update t >= 10, cos(pi t / 50)
    assert lrs[10] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 10 / 50)))
    assert lrs[25] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # halfway through
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))  # strictly decreasing after warm-up


def test_warmup_prefix_starts_the_cosine_at_the_peak_after_the_warmup():
    """The NTU recipes' schedule: linear warm-up, then a cosine over the updates left, from lr to min_lr."""
    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=3e-3)
    scheduler = build_scheduler(optimizer, epochs=6, cooldown_epochs=0, warmup_epochs=1, warmup_lr=1e-5, min_lr=1e-5,
                                steps_per_epoch=5, on_updates=True, warmup_prefix=True)
    lrs = _lrs(scheduler, optimizer, 6, 5)
    assert lrs[:5] == pytest.approx([1e-5 + (3e-3 - 1e-5) * t / 5 for t in range(5)])
    expected = [1e-5 + (3e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * (t - 5) / 25)) for t in range(5, 30)]
    assert lrs[5:] == pytest.approx(expected)  # lrs[5] is the peak


def test_per_epoch_schedule_holds_each_epoch_and_cools_down_at_min_lr():
    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1e-3)
    scheduler = build_scheduler(optimizer, epochs=6, cooldown_epochs=2, warmup_epochs=1, warmup_lr=1e-6, min_lr=1e-5,
                                steps_per_epoch=3)
    lrs = _lrs(scheduler, optimizer, 6, 3)
    per_epoch = [lrs[3 * e] for e in range(6)]
    assert all(lrs[3 * e:3 * e + 3] == [per_epoch[e]] * 3 for e in range(6))  # constant within an epoch
    assert per_epoch[0] == 1e-6 and per_epoch[4:] == [1e-5, 1e-5]  # warm-up start, then the cool-down


def test_schedule_resumes_on_the_same_curve():
    def make():
        optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1e-3)
        return optimizer, build_scheduler(optimizer, epochs=4, cooldown_epochs=1, warmup_epochs=1, warmup_lr=0.0,
                                          min_lr=0.0, steps_per_epoch=5, on_updates=True)

    optimizer, scheduler = make()
    whole = _lrs(scheduler, optimizer, 4, 5)
    # A resumed worker: a fresh optimizer and scheduler, the saved states, then the next epoch.
    fresh_optimizer, fresh_scheduler = make()
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    fresh_scheduler.load_state_dict(scheduler.state_dict())
    resumed = []
    for epoch in (2, 3):
        set_position(fresh_scheduler, epoch, 5)
        for step in range(5):
            resumed.append(fresh_optimizer.param_groups[0]["lr"])
            after_update(fresh_scheduler, epoch, step, 5)
    assert resumed == whole[10:]


# ------------------------------------------------------------------ mixup / cutmix (timm's Mixup)


def _mixer(num_classes, **kw):
    args = dict(mixup=0.0, cutmix=0.0, prob=1.0, switch_prob=0.5, mode="batch", label_smoothing=0.0, off_epoch=0)
    return BatchMixer(num_classes, **{**args, **kw})


def test_mixup_on_sequence_batches_mixes_every_time_step_alike():
    np.random.seed(0)
    mixer = _mixer(6, mixup=0.8)
    x, y = torch.rand(6, 3, 2, 8, 8), torch.arange(6)
    original = x.clone()
    mixed, targets = mixer(x, y)
    assert mixed.shape == x.shape and targets.shape == (6, 6)
    assert torch.allclose(targets.sum(1), torch.ones(6))
    lam = targets[0, 0].item()
    assert 0 < lam < 1 and targets[0, 5].item() == pytest.approx(1 - lam)
    # timm pairs sample i with B-1-i (a flip): every time step uses the same weight.
    assert torch.allclose(mixed[0], lam * original[0] + (1 - lam) * original[-1], atol=1e-6)


def test_cutmix_box_is_spatial_and_shared_across_time_steps():
    np.random.seed(0)  # a seed whose box is neither empty nor whole
    mixer = _mixer(4, cutmix=1.0)
    x = torch.stack([torch.full((3, 2, 16, 16), float(i)) for i in range(4)])  # sample i is constant i
    y = torch.arange(4)
    mixed, targets = mixer(x, y)
    from_partner = mixed[1] == 2.0  # sample 1's pixels taken from its partner, sample 2
    assert from_partner.any() and not from_partner.all()
    assert (from_partner == from_partner[0, 0]).all()  # the same H x W box in every step and channel
    area = from_partner[0, 0].float().mean().item()
    assert targets[1, 2].item() == pytest.approx(area) and targets[1, 1].item() == pytest.approx(1 - area)


def test_unmixed_batches_get_label_smoothed_one_hot_targets():
    mixer = _mixer(4, label_smoothing=0.2)
    x, y = torch.rand(2, 3, 4, 4), torch.tensor([2, 0])
    same, targets = mixer(x, y)
    assert same is x and torch.allclose(targets, torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]]))


# ------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip_with_weights_only_and_rng_state(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.rand(3, 4)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 4, "rng": [ckpt.rng_state()]}
    ckpt.save_checkpoint(tmp_path, state)
    draws = (random.random(), np.random.rand(), torch.rand(1).item())

    loaded = torch.load(tmp_path / ckpt.STATE_FILE, weights_only=True)  # the safe loader accepts every field
    assert loaded["epoch"] == 4 and torch.equal(loaded["model"]["weight"], model.weight)
    restored = ckpt.load_checkpoint(tmp_path)
    ckpt.set_rng_state(restored["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    fresh = torch.optim.AdamW(nn.Linear(4, 2).parameters(), lr=0.1)
    fresh.load_state_dict(restored["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_broken_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / ckpt.STATE_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptDataError, match=r"state\.pt cannot be loaded"):
        ckpt.load_checkpoint(tmp_path)
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CorruptDataError, match="not a suite checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")


# ------------------------------------------------------------------ crash hook


def test_crash_plan_parsing_and_marker(tmp_path):
    plan = parse_crash_plan("epoch=1,rank=1,step=2", tmp_path)
    assert (plan.epoch, plan.rank, plan.step, plan.marker) == (1, 1, 2, tmp_path / "crash-hook.done")
    assert plan.should_crash(1, 1, 2) and not plan.should_crash(1, 0, 2) and not plan.should_crash(0, 1, 2)
    assert parse_crash_plan("", tmp_path) is None
    assert parse_crash_plan(f"epoch=0,rank=0,marker={tmp_path}/m", "/x").marker == tmp_path / "m"
    for bad in ("epoch=1", "rank=x,epoch=1", "epoch=1,rank=0,when=now"):
        with pytest.raises(UsageError, match="SUITE_TEST_CRASH"):
            parse_crash_plan(bad, tmp_path)


def test_crash_hook_kills_the_process_once(tmp_path):
    code = (
        "from suite.engine.crash_injection import crash_plan_from_env\n"
        "plan = crash_plan_from_env('unused')\n"
        "for step in range(3):\n"
        "    plan.maybe_crash(0, 0, step)\n"
        "print('survived')\n"
    )
    env = dict(os.environ, SUITE_TEST_CRASH=f"epoch=0,rank=0,step=1,marker={tmp_path / 'marker'}")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == CRASH_EXIT_CODE and "survived" not in first.stdout
    assert (tmp_path / "marker").read_text().startswith("crashed rank 0 at epoch 0 step 1")
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "survived" in second.stdout


# ------------------------------------------------------------------ exact distributed evaluation

EVAL_SIZE = 11  # odd: a padded shard would count a sample twice


def _firing_model() -> nn.Module:
    """spikformer-1-32 whose neurons fire (BN scaled up), so spike counts are not all zero."""
    from suite.models import create_model

    torch.manual_seed(0)
    model = create_model("spikformer-1-32", **get_task("cifar10").model_kwargs(2))
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.constant_(module.weight, 2.0)
            nn.init.constant_(module.bias, 1.0)
    return model.eval()


def _eval_dataset():
    return get_task("cifar10").build_dataset("eval", data="synthetic", time_steps=2, synthetic_size=EVAL_SIZE)


def _evaluate_on(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    from suite.metrics import SNNMonitor

    model = _firing_model()
    monitor = SNNMonitor(model)
    # Batch size 1: every sample's arithmetic is bit-identical however the set is sharded.
    result = evaluate(
        model, _eval_dataset(), batch_size=1, device=torch.device("cpu"), rank=rank, world_size=world_size,
        monitor=monitor,
    )
    summary = monitor.summary()
    torch.save(
        {"result": result.__dict__, "sops": summary["sops_per_sample"], "samples": summary["samples"],
         "rates": summary["firing_rates"]},
        Path(out_dir) / f"rank{rank}_of{world_size}.pt",
    )
    if world_size > 1:
        dist.destroy_process_group()


def test_shards_are_disjoint_and_cover_every_sample():
    shards = [set(shard_indices(EVAL_SIZE, r, 3)) for r in range(3)]
    assert set().union(*shards) == set(range(EVAL_SIZE)) and sum(map(len, shards)) == EVAL_SIZE


@pytest.mark.slow
def test_two_process_gloo_eval_equals_single_process(tmp_path):
    _evaluate_on(0, 1, "", str(tmp_path))
    mp.spawn(_evaluate_on, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = torch.load(tmp_path / "rank0_of1.pt", weights_only=True)
    for rank in (0, 1):
        double = torch.load(tmp_path / f"rank{rank}_of2.pt", weights_only=True)
        assert double["result"]["total"] == single["result"]["total"] == EVAL_SIZE
        assert double["result"]["correct1"] == single["result"]["correct1"]
        assert double["result"]["correct5"] == single["result"]["correct5"]
        assert double["result"]["loss_sum"] == pytest.approx(single["result"]["loss_sum"], rel=1e-9)
        assert double["samples"] == single["samples"] == EVAL_SIZE  # monitor counts all-reduced too
        assert double["sops"] == pytest.approx(single["sops"], rel=1e-9)
        assert double["rates"] == pytest.approx(single["rates"], rel=1e-9)
    assert single["sops"] > 0 and 0 < single["result"]["correct5"] <= EVAL_SIZE


# ------------------------------------------------------------------ one epoch, outside Ray


def test_one_bf16_epoch_with_mixup_on_sequence_input(capsys):
    """An event task's [B, T, C, H, W] batches through mixup/cutmix, bf16 autocast and the bar."""
    from suite.engine.epoch import train_one_epoch
    from suite.models import create_model

    task = get_task("dvs128-gesture")
    dataset = task.build_dataset("train", data="synthetic", time_steps=2, synthetic_size=8)
    torch.manual_seed(0)
    model = create_model("spikformer-1-32", **task.model_kwargs(2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_one_epoch(
        model, loader, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, epochs=1, cooldown_epochs=0, warmup_epochs=0, warmup_lr=0, min_lr=0,
                                  steps_per_epoch=2),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        mixer=_mixer(task.num_classes, mixup=0.8, cutmix=1.0, label_smoothing=0.1),
        device=torch.device("cpu"), amp="bf16", epoch=0, epochs=1, rank=0, world_size=1,
        progress_bar=True,
    )
    assert stats.samples == 8 and 0 <= stats.correct <= 8
    assert math.isfinite(stats.loss_sum) and stats.loss_sum / 8 > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    bar = capsys.readouterr().err
    assert "epoch 1/1" in bar and "loss=" in bar and "samples_s=" in bar
