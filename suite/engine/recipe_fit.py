"""What a run does to its task's recipe: short runs get a scaled schedule, and every change is said.

The recipe's epoch counts (warm-up, cool-down, the mixup-off epoch) are written for its full
length. A run asked for fewer epochs keeps them when they still fit, and otherwise scales them:

    when epochs < the recipe's epochs and either warm-up + cool-down >= epochs (no cosine epoch
    left) or mixup_off_epoch >= epochs (mixup would never turn off), each of the three that came
    from the recipe is multiplied by epochs / recipe epochs and rounded (a mixup-off epoch stays
    >= 1, so that it still turns mixup off); a value set by a flag or --config is kept as given.

Example: `--task cifar10 --epochs 5` (recipe: 310 epochs, 20 warm-up, 10 cool-down, mixup off
from 200) runs warm-up 0, cool-down 0, mixup off from epoch 3. The run logs one warning stating
the schedule it uses, and `recipe_deviations` (an MLflow param) lists every setting that differs
from the recipe.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suite.run_settings import RunSettings
    from suite.task import Recipe

log = logging.getLogger(__name__)

EPOCH_COUNTS = ("warmup_epochs", "cooldown_epochs", "mixup_off_epoch")


def _mixing(settings: "RunSettings") -> bool:
    return (settings.mixup > 0 or settings.cutmix > 0) and settings.mixup_prob > 0


def _does_not_fit(settings: "RunSettings") -> list[str]:
    problems = []
    if settings.warmup_epochs + settings.cooldown_epochs >= settings.epochs:
        problems.append(
            f"warm-up {settings.warmup_epochs} + cool-down {settings.cooldown_epochs} epochs leave no cosine epoch"
        )
    if _mixing(settings) and settings.mixup_off_epoch >= settings.epochs:
        problems.append(f"mixup-off epoch {settings.mixup_off_epoch} falls after the run")
    return problems


def scaled_epoch_counts(recipe: "Recipe", epochs: int) -> dict[str, int]:
    """The recipe's warm-up, cool-down and mixup-off epoch for a run of `epochs` (see module doc)."""
    ratio = epochs / recipe.epochs
    scaled = {name: round(getattr(recipe, name) * ratio) for name in EPOCH_COUNTS}
    if recipe.mixup_off_epoch > 0:
        scaled["mixup_off_epoch"] = max(1, scaled["mixup_off_epoch"])
    return scaled


def fit_to_run(settings: "RunSettings", recipe: "Recipe", from_recipe: set[str]) -> None:
    """Scale the recipe's epoch counts of a short run in place (module doc); warn once if it changes them."""
    problems = _does_not_fit(settings)
    if settings.epochs >= recipe.epochs or not problems:
        return
    scaled = scaled_epoch_counts(recipe, settings.epochs)
    changed = [name for name in EPOCH_COUNTS if name in from_recipe and getattr(settings, name) != scaled[name]]
    for name in changed:
        setattr(settings, name, scaled[name])
    how = (
        f"scaled the recipe's {', '.join(changed)} by {settings.epochs}/{recipe.epochs}"
        if changed
        else "kept the values as given"
    )
    still = _does_not_fit(settings)
    log.warning(
        "%s: %d epochs against the recipe's %d (%s); %s. Schedule used: %s%s",
        settings.task, settings.epochs, recipe.epochs, "; ".join(problems), how, schedule_summary(settings),
        f" (still: {'; '.join(still)})" if still else "",
    )


def schedule_summary(settings: "RunSettings") -> str:
    """The LR and mixup schedule of a run, in one sentence."""
    cosine_end = settings.epochs - settings.cooldown_epochs
    cosine_start = settings.warmup_epochs if settings.warmup_prefix else 0
    parts = [
        f"warm-up {settings.warmup_epochs} epoch(s) from {settings.warmup_lr:g}",
        f"cosine from {settings.lr:g} to {settings.min_lr:g} over epochs {cosine_start}-{cosine_end - 1}",
        f"{settings.cooldown_epochs} cool-down epoch(s) at {settings.min_lr:g}",
        "stepped per update" if settings.sched_on_updates else "stepped per epoch",
    ]
    if _mixing(settings):
        off = settings.mixup_off_epoch
        parts.append(f"mixup off from epoch {off}" if 0 < off < settings.epochs else "mixup on throughout")
    return ", ".join(parts)


def recipe_deviations(settings: "RunSettings", recipe: "Recipe") -> str:
    """Every recipe setting this run changes, e.g. "epochs 5 (recipe 310); batch_size 64 (recipe 128)".

    A global batch that the workers cannot split evenly is listed with the batch actually used.
    """
    from suite.run_settings import RECIPE_FIELDS

    changes = [
        f"{name} {getattr(settings, name)} (recipe {getattr(recipe, name)})"
        for name in RECIPE_FIELDS
        if getattr(settings, name) != getattr(recipe, name)
    ]
    used = settings.per_worker_batch_size * settings.workers
    if used != settings.batch_size:
        changes.append(
            f"global batch {used} used ({settings.per_worker_batch_size} per worker x {settings.workers} workers; "
            f"{settings.batch_size} does not split evenly)"
        )
    return "; ".join(changes)
