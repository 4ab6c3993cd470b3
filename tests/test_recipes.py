"""The official training recipes, honoured by code: table-driven over the paper's tasks.

OFFICIAL restates the official code's values (ZK-Zhou/spikformer, commit 6212689) independently of
the task YAML files, with their file:line, so a drifting recipe fails here.
"""

import ast
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from timm.scheduler import CosineLRScheduler

from suite.engine.config import resolve_settings
from suite.engine.mixing import BatchMixer
from suite.engine.schedule import after_update, build_scheduler, set_position
from suite.recipe_table import markdown_table
from suite.task_registry import get_task

ROOT = Path(__file__).resolve().parents[1]

# task: (cosine epochs, cooldown, warm-up, warmup_lr, lr, min_lr, mixup-off epoch, global batch)
OFFICIAL = {
    # cifar10/cifar10.yml:1,45,46,47,41,42,31,39
    "cifar10": (300, 10, 20, 1e-5, 5e-4, 1e-5, 200, 128),
    "cifar100": (300, 10, 20, 1e-5, 5e-4, 1e-5, 200, 128),  # the same file: no CIFAR-100 config exists
    # imagenet/imagenet.yml:34,35,36,37,30,31,20,28 (24 per GPU) x README.md:60 (8 GPUs)
    "imagenet": (300, 10, 20, 1e-6, 5e-4, 1e-5, 0, 24 * 8),
    # cifar10dvs/train.py:110,120,118,106,94,108,426,44
    "cifar10-dvs": (96, 10, 10, 1e-5, 1e-3, 1e-5, 75, 16),
    # the same script's defaults, with the paper's 200 epochs (190 cosine + 10 cool-down)
    "dvs128-gesture": (190, 10, 10, 1e-5, 1e-3, 1e-5, 75, 16),
}


def _settings(task, **overrides):
    return resolve_settings(task, {"data": "synthetic", **overrides})


# ------------------------------------------------------------------ schedule


@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_lr_at_every_epoch_boundary_equals_timms_official_scheduler(task):
    cosine, cooldown, warmup, warmup_lr, lr, min_lr, _, _ = OFFICIAL[task]
    settings = _settings(task)
    assert settings.epochs == cosine + cooldown  # CIFAR trains 310 epochs

    # The official way: timm's CosineLRScheduler from the config, `step(epoch + 1)` after each epoch.
    reference_opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=lr)
    reference = CosineLRScheduler(reference_opt, t_initial=cosine, lr_min=min_lr, warmup_t=warmup,
                                  warmup_lr_init=warmup_lr, cycle_limit=1, t_in_epochs=True)
    official = []
    for epoch in range(cosine + cooldown):
        official.append(reference_opt.param_groups[0]["lr"])
        reference.step(epoch + 1)

    # The suite's way, from the resolved settings, driven as train_one_epoch drives it (3 updates/epoch).
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=settings.lr)
    scheduler = build_scheduler(
        optimizer, epochs=settings.epochs, cooldown_epochs=settings.cooldown_epochs, warmup_epochs=settings.warmup_epochs,
        warmup_lr=settings.warmup_lr, min_lr=settings.min_lr, steps_per_epoch=3, on_updates=settings.sched_on_updates,
        warmup_prefix=settings.warmup_prefix,
    )
    suite, states = [], {}
    for epoch in range(settings.epochs):
        set_position(scheduler, epoch, 3)
        suite.append(optimizer.param_groups[0]["lr"])
        for step in range(3):
            assert optimizer.param_groups[0]["lr"] == suite[-1]  # per epoch, as the official code steps it
            after_update(scheduler, epoch, step, 3)
        states[epoch] = (optimizer.state_dict(), scheduler.state_dict())
    assert suite == official
    assert official[0] == warmup_lr and official[-cooldown:] == [min_lr] * cooldown

    # Resume after any epoch: a fresh optimizer and scheduler with the checkpointed states continue exactly.
    for saved in (warmup - 1, warmup, cosine - 1, cosine):
        optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=settings.lr)
        fresh = build_scheduler(
            optimizer, epochs=settings.epochs, cooldown_epochs=settings.cooldown_epochs, warmup_epochs=settings.warmup_epochs,
            warmup_lr=settings.warmup_lr, min_lr=settings.min_lr, steps_per_epoch=3, on_updates=settings.sched_on_updates,
            warmup_prefix=settings.warmup_prefix,
        )
        optimizer.load_state_dict(states[saved][0])
        fresh.load_state_dict(states[saved][1])
        resumed = []
        for epoch in range(saved + 1, settings.epochs):
            set_position(fresh, epoch, 3)
            resumed.append(optimizer.param_groups[0]["lr"])
        assert resumed == official[saved + 1:]


# ------------------------------------------------------------------ mixup


def _batch(task, size=8):
    shape = (size, 2, 2, 8, 8) if get_task(task).config.sequence_input else (size, 3, 8, 8)
    return torch.rand(shape), torch.arange(size) % get_task(task).num_classes


def _mixed_batches(mixer, task, epoch, batches=30):
    mixer.set_epoch(epoch)
    mixed = 0
    for _ in range(batches):
        x, y = _batch(task)
        out, targets = mixer(x.clone(), y)
        if not torch.equal(out, x):
            mixed += 1
        else:  # unmixed: timm's label-smoothed one-hot targets
            expected = torch.full_like(targets, 0.1 / targets.shape[1])
            expected[torch.arange(len(y)), y] += 0.9
            assert torch.allclose(targets, expected)
    return mixed


@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_mixup_is_applied_before_the_mixup_off_epoch_and_never_after(task):
    off = OFFICIAL[task][6]
    settings = _settings(task)
    assert settings.mixup_off_epoch == off
    np.random.seed(0)
    mixer = BatchMixer(
        get_task(task).num_classes, mixup=settings.mixup, cutmix=settings.cutmix, prob=settings.mixup_prob,
        switch_prob=settings.mixup_switch_prob, mode=settings.mixup_mode, label_smoothing=settings.label_smoothing,
        off_epoch=settings.mixup_off_epoch,
    )
    before = [0, off - 1] if off else [0, settings.epochs - 1]
    for epoch in before:
        assert _mixed_batches(mixer, task, epoch) > 0, epoch
    for epoch in ([off, off + 1, settings.epochs - 1] if off else []):
        assert _mixed_batches(mixer, task, epoch) == 0, epoch
    mixer.set_epoch(0)  # a resumed run turns it back on for an earlier epoch
    assert mixer.enabled


def test_the_training_loop_switches_mixup_off_at_the_epoch():
    """train_one_epoch itself applies the off epoch (CIFAR10-DVS: 75), on [B, T, C, H, W] batches."""
    from suite.engine.epoch import train_one_epoch

    task = get_task("cifar10-dvs")
    settings = _settings("cifar10-dvs", time_steps=2)
    x, y = _batch("cifar10-dvs", 16)
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(2 * 2 * 8 * 8, task.num_classes)

        def forward(self, batch):
            seen.append(batch.detach().clone())
            return self.head(batch.flatten(1))

    model = Recorder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    scheduler = build_scheduler(optimizer, epochs=settings.epochs, cooldown_epochs=settings.cooldown_epochs,
                                warmup_epochs=settings.warmup_epochs, warmup_lr=settings.warmup_lr,
                                min_lr=settings.min_lr, steps_per_epoch=len(loader))
    mixer = BatchMixer(task.num_classes, mixup=settings.mixup, cutmix=settings.cutmix, prob=1.0,
                       switch_prob=settings.mixup_switch_prob, mode=settings.mixup_mode,
                       label_smoothing=settings.label_smoothing, off_epoch=settings.mixup_off_epoch)
    np.random.seed(0)
    changed = {}
    for epoch in (74, 75):
        seen.clear()
        train_one_epoch(model, loader, optimizer=optimizer, scheduler=scheduler, mixer=mixer,
                        scaler=torch.amp.GradScaler("cpu", enabled=False), device=torch.device("cpu"), amp="off",
                        epoch=epoch, epochs=settings.epochs, rank=0, world_size=1)
        changed[epoch] = [not torch.equal(a, b) for a, b in zip(seen, (x[:8], x[8:]))]
    assert changed == {74: [True, True], 75: [False, False]}


# ------------------------------------------------------------------ augmentation


def test_cifar_randaugment_draws_only_the_five_official_ops_and_skips_half_the_images():
    """cifar10/aa_snn.py:563-580: five ops, one per image (n1), each applied with p = 0.5."""
    from tasks.transforms import build_image_transform

    (randaugment,) = [t for t in build_image_transform(get_task("cifar10").config, train=True).transforms
                      if type(t).__name__ == "RandAugment"]
    drawn, recorded = {}, []

    class Observed:  # records which op each image draws; the op itself still runs
        def __init__(self, op):
            self.op = op

        def __call__(self, img):
            recorded.append(self.op.name)
            return self.op(img)

    randaugment.ops = [Observed(op) for op in randaugment.ops]
    # A smooth gradient: every op at magnitude ~9 (and Equalize on a narrow histogram) changes it.
    ramp = np.add.outer(np.arange(32), np.arange(32)).astype(np.uint8) * 2 + 60
    image = Image.fromarray(np.stack([ramp, ramp[::-1], ramp.T], axis=-1))
    random.seed(0), np.random.seed(0)
    trials = 4000
    unchanged = sum(np.array_equal(np.asarray(randaugment(image)), np.asarray(image)) for _ in range(trials))
    for name in recorded:
        drawn[name] = drawn.get(name, 0) + 1
    assert set(drawn) == {"Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"}
    assert len(recorded) == trials  # n1: one op per image
    # p = 0.5 per op: half the images unchanged. Binomial std sqrt(0.25 / 4000) = 0.0079; tolerance 0.03 (3.8 std).
    assert abs(unchanged / trials - 0.5) < 0.03
    # Uniform choice among the five: 800 each, std 25; tolerance 100 (4 std).
    assert all(abs(count - trials / 5) < 100 for count in drawn.values()), drawn


# ------------------------------------------------------------------ every recipe key is read


def _holder(node) -> str:
    """"settings" for `settings.x` / `self.settings.x`, "extra" for `config.extra[...]`, etc."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _read_names() -> set[str]:
    """Recipe values read by code: `settings.x`, `recipe.x`, `extra["x"]`, `extra.get("x")`."""
    names = set()
    skip = {ROOT / "suite" / "task.py", ROOT / "suite" / "recipe_table.py"}  # the definitions and the printer
    for path in [*(ROOT / "suite").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]:
        if path in skip:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _holder(node.value) in ("settings", "recipe"):
                names.add(node.attr)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and _holder(node.value) == "extra":
                names.add(node.slice.value)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and _holder(node.func.value) == "extra" and node.args and isinstance(node.args[0], ast.Constant)):
                names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("yaml_file", sorted((ROOT / "tasks").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_and_extra_key_is_read_by_code(yaml_file):
    raw = yaml.safe_load(yaml_file.read_text())
    keys = set(raw["recipe"]) | set(raw.get("extra", {}))
    unread = sorted(keys - _read_names())
    assert not unread, f"{yaml_file.name}: {unread} are read by no code; apply them or list them under not_applicable"


# Every key of the official configs (cifar10/cifar10.yml, imagenet/imagenet.yml; for the DVS script the
# defaults it sets or uses), by the name the official code gives it.
OFFICIAL_KEYS = {
    "cifar10": ["epochs", "time_step", "layer", "dim", "num_heads", "patch_size", "mlp_ratio", "data_dir",
                "dataset", "num_classes", "img_size", "mean", "std", "crop_pct", "scale", "ratio", "color_jitter",
                "interpolation", "train_interpolation", "aa", "mixup", "mixup_off_epoch", "mixup_prob", "mixup_mode",
                "mixup_switch_prob", "cutmix", "reprob", "remode", "amp", "batch_size", "val_batch_size", "lr",
                "min_lr", "sched", "weight_decay", "cooldown_epochs", "warmup_epochs", "warmup_lr", "opt",
                "smoothing", "workers"],
    "imagenet": ["dataset", "num_classes", "img_size", "mean", "std", "crop_pct", "scale", "interpolation",
                 "train_interpolation", "aa", "mixup", "mixup_off_epoch", "mixup_prob", "mixup_mode",
                 "mixup_switch_prob", "cutmix", "reprob", "remode", "amp", "batch_size", "val_batch_size", "lr",
                 "min_lr", "sched", "weight_decay", "epochs", "cooldown_epochs", "warmup_epochs", "warmup_lr", "opt",
                 "smoothing", "workers", "resume"],
    "cifar10-dvs": ["data-path", "device", "batch-size", "workers", "amp", "T", "opt", "opt-eps", "weight-decay",
                    "momentum", "connect_f", "T_train", "sched", "lr", "warmup-lr", "min-lr", "epochs",
                    "warmup-epochs", "cooldown-epochs", "smoothing", "mixup", "cutmix", "mixup-prob",
                    "mixup-switch-prob", "mixup-mode"],
}
OFFICIAL_KEYS["cifar100"] = OFFICIAL_KEYS["cifar10"]
OFFICIAL_KEYS["dvs128-gesture"] = OFFICIAL_KEYS["cifar10-dvs"]


@pytest.mark.parametrize("task", sorted(OFFICIAL_KEYS))
def test_every_official_key_is_applied_or_said_not_to_apply(task):
    config = get_task(task).config
    cited = set()
    for entries in config.sources.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            parts = entry.split()
            if len(parts) > 1:
                cited.add(parts[1])
    missing = [key for key in OFFICIAL_KEYS[task] if key not in cited and key not in config.not_applicable]
    assert not missing, f"{task}: official keys {missing} are neither sourced nor listed under not_applicable"


# ------------------------------------------------------------------ global batch, amp, short runs


def test_global_batch_is_the_recipes_and_other_batches_are_recorded():
    assert {task: _settings(task).batch_size for task in OFFICIAL} == {t: v[7] for t, v in OFFICIAL.items()}
    eight = _settings("imagenet", workers=8)
    assert eight.per_worker_batch_size == 24 and "batch_size" not in eight.recipe_deviations
    uneven = _settings("cifar10", batch_size=98, workers=3)
    assert "batch_size 98 (recipe 128)" in uneven.recipe_deviations
    assert "global batch 96 used (32 per worker x 3 workers" in uneven.recipe_deviations


def test_odd_mixup_batches_and_cooldowns_without_a_cosine_are_refused_at_construction():
    from suite.errors import UsageError

    with pytest.raises(UsageError, match="each worker's batch must be even.*gives 33"):
        _settings("cifar10", batch_size=99, workers=3, epochs=310)
    assert _settings("ntu120", batch_size=99, workers=3).per_worker_batch_size == 33  # no mixup: fine
    with pytest.raises(UsageError, match=r"^--cooldown-epochs \(3\) leaves no cosine epoch in 3 epochs"):
        _settings("cifar10", epochs=3, cooldown_epochs=3)


def test_dvs_amp_is_cuda_fp16_and_fp32_on_cpu():
    for task in ("cifar10-dvs", "dvs128-gesture"):
        assert get_task(task).recipe.amp == "fp16"
        assert _settings(task, gpus_per_worker=1).amp == "fp16"  # autocast fp16 + GradScaler (epoch.py)
        cpu = _settings(task)
        assert cpu.amp == "off" and "amp off (recipe fp16)" in cpu.recipe_deviations


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dvs_epoch_trains_under_fp16_autocast_with_loss_scaling_on_cuda():
    from suite.engine.epoch import train_one_epoch

    dtypes = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(2 * 2 * 8 * 8, 10)

        def forward(self, batch):
            out = self.head(batch.flatten(1))
            dtypes.append(out.dtype)
            return out

    device = torch.device("cuda")
    model = Probe().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=True)
    x, y = _batch("cifar10-dvs", 8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    scheduler = build_scheduler(optimizer, epochs=2, cooldown_epochs=0, warmup_epochs=0, warmup_lr=1e-5, min_lr=1e-5,
                                steps_per_epoch=1)
    mixer = BatchMixer(10, mixup=0.5, cutmix=0.0, prob=0.5, switch_prob=0.5, mode="batch", label_smoothing=0.1, off_epoch=75)
    train_one_epoch(model, loader, optimizer=optimizer, scheduler=scheduler, scaler=scaler, mixer=mixer, device=device,
                    amp="fp16", epoch=0, epochs=2, rank=0, world_size=1)
    assert dtypes == [torch.float16] and scaler.get_scale() > 1.0


def test_a_short_run_scales_the_recipes_schedule_warns_once_and_records_it(caplog):
    with caplog.at_level(logging.WARNING, logger="suite.engine.recipe_fit"):
        short = _settings("cifar10", epochs=5)
    assert (short.warmup_epochs, short.cooldown_epochs, short.mixup_off_epoch) == (0, 0, 3)  # x 5/310, rounded
    (warning,) = caplog.records
    assert "scaled the recipe's warmup_epochs, cooldown_epochs, mixup_off_epoch by 5/310" in warning.message
    assert "Schedule used: warm-up 0 epoch(s)" in warning.message and "mixup off from epoch 3" in warning.message
    assert "warmup_epochs 0 (recipe 20)" in short.recipe_deviations and "epochs 5 (recipe 310)" in short.recipe_deviations
    # A value the user sets is kept as given; one that fits is not touched.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="suite.engine.recipe_fit"):
        given = _settings("cifar10", epochs=5, warmup_epochs=2)
        fits = _settings("cifar10", epochs=250)
    assert (given.warmup_epochs, given.cooldown_epochs) == (2, 0)
    assert (fits.warmup_epochs, fits.cooldown_epochs, fits.mixup_off_epoch) == (20, 10, 200)
    assert len(caplog.records) == 1 and fits.recipe_deviations == "epochs 250 (recipe 310); amp off (recipe fp16)"


# ------------------------------------------------------------------ the README's recipe tables


@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_readme_recipe_table_is_the_tasks_recipe(task):
    assert markdown_table(get_task(task)) in (ROOT / "README.md").read_text()


def test_tasks_recipe_prints_every_value_with_its_official_source(capsys):
    from suite.cli import main

    assert main(["tasks", "--recipe", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "mixup_off_epoch    200" in out and "cifar10/cifar10.yml:31 mixup_off_epoch = 200" in out
    assert "cifar10/cifar10.yml:1 epochs = 300; cifar10/cifar10.yml:45 cooldown_epochs = 10" in out
    assert "workers            not applied" in out
