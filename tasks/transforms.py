"""Image pipelines of the paper's recipes, built from a task's config with torchvision.transforms.v2.

The official Spikformer code uses timm's `create_transform`; this module reproduces its training
pipeline with torchvision: [RandomResizedCrop] -> horizontal flip -> RandAugment -> tensor ->
normalize -> RandomErasing. Mixup and cutmix act on batches and live in the training loop.

Per-task knobs come from the YAML's `extra` mapping (all optional):
  mean, std            normalization (default: ImageNet statistics)
  interpolation        "bicubic" | "bilinear" | ... for resizing (default bicubic)
  train_crop           "random_resized" (default) or "none" (CIFAR: images are already 32x32)
  crop_scale           RandomResizedCrop area range (default [0.08, 1.0])
  crop_ratio           RandomResizedCrop aspect range (default [3/4, 4/3])
  eval_crop_pct        eval: resize to size / crop_pct, then centre-crop (default 1.0)
  hflip                horizontal flip probability (default 0.5)
  erasing_mode         "const" (zeros, the official configs) or "pixel" (per-pixel normal noise)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from suite.errors import UsageError
from suite.task import TaskConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# timm's magnitudes run 0..10 and its op ranges are reached at 10; torchvision indexes a table
# of `num_magnitude_bins` values, so 10 steps per unit give the same ranges at 0.1 resolution.
_MAX_MAGNITUDE = 10
_BINS_PER_UNIT = 10


@dataclass(frozen=True)
class RandAugmentSpec:
    """A timm RandAugment string such as "rand-m9-n1-mstd0.4-inc1", parsed."""

    magnitude: float
    num_ops: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False

    @classmethod
    def parse(cls, spec: str) -> RandAugmentSpec:
        parts = spec.split("-")
        if parts[0] != "rand":
            raise UsageError(f"RandAugment spec {spec!r} must start with 'rand-' (e.g. 'rand-m9-n1-mstd0.4-inc1')")
        fields: dict = {}
        for part in parts[1:]:
            match = re.fullmatch(r"(mstd|inc|m|n)(\d+(?:\.\d+)?)", part)
            if not match:
                raise UsageError(
                    f"RandAugment spec {spec!r}: cannot read {part!r}; "
                    "supported parts are m<magnitude>, n<ops>, mstd<std>, inc<0|1>"
                )
            key, value = match.groups()
            if key == "m":
                fields["magnitude"] = float(value)
            elif key == "n":
                fields["num_ops"] = int(float(value))
            elif key == "mstd":
                fields["magnitude_std"] = float(value)
            else:
                fields["increasing"] = bool(int(float(value)))
        if "magnitude" not in fields:
            raise UsageError(f"RandAugment spec {spec!r} has no magnitude part 'm<0-10>'")
        if not 0 <= fields["magnitude"] <= _MAX_MAGNITUDE:
            raise UsageError(f"RandAugment spec {spec!r}: magnitude must be within 0..{_MAX_MAGNITUDE}")
        return cls(**fields)


class TimmRandAugment(torch.nn.Module):
    """RandAugment with timm's magnitude scale and per-op magnitude noise (`mstd`).

    Each of the `num_ops` ops draws its magnitude from N(m, mstd) clipped to [0, 10] and applies
    one random torchvision op at that magnitude. torchvision's op table is the increasing-severity
    one ("inc1" in timm: solarize and posterize get stronger with the magnitude), so that is what
    every spec gets; a spec without inc1 is logged once.
    """

    def __init__(self, spec: RandAugmentSpec, fill: tuple[int, ...] | None = None):
        super().__init__()
        self.spec = spec
        self.fill = list(fill) if fill is not None else None
        self._ops: dict[int, v2.RandAugment] = {}
        if not spec.increasing:
            log.info("RandAugment: torchvision's ops are the increasing-severity set (timm 'inc1'); using it")

    def _op_at(self, level: int) -> v2.RandAugment:
        if level not in self._ops:
            self._ops[level] = v2.RandAugment(
                num_ops=1,
                magnitude=level,
                num_magnitude_bins=_MAX_MAGNITUDE * _BINS_PER_UNIT + 1,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=self.fill,
            )
        return self._ops[level]

    def _draw_level(self) -> int:
        magnitude = self.spec.magnitude
        if self.spec.magnitude_std > 0:
            magnitude += float(torch.randn(())) * self.spec.magnitude_std
        magnitude = min(max(magnitude, 0.0), float(_MAX_MAGNITUDE))
        return round(magnitude * _BINS_PER_UNIT)

    def forward(self, image):
        for _ in range(self.spec.num_ops):
            image = self._op_at(self._draw_level())(image)
        return image

    def extra_repr(self) -> str:
        return f"spec={self.spec}"


def _interpolation(name: str) -> v2.InterpolationMode:
    try:
        return v2.InterpolationMode(name.lower())
    except ValueError:
        valid = ", ".join(m.value for m in v2.InterpolationMode)
        raise UsageError(f"interpolation {name!r} is not one of {valid}") from None


def build_image_transform(config: TaskConfig, train: bool) -> v2.Compose:
    """The train (augmenting) or eval pipeline for a static-image task: PIL image -> float [C, H, W]."""
    extra = config.extra
    _, height, width = config.input_shape
    size = (height, width)
    mean = tuple(extra.get("mean", IMAGENET_MEAN))
    std = tuple(extra.get("std", IMAGENET_STD))
    interpolation = _interpolation(extra.get("interpolation", "bicubic"))
    steps: list = []
    if train:
        if extra.get("train_crop", "random_resized") == "random_resized":
            steps.append(
                v2.RandomResizedCrop(
                    size,
                    scale=tuple(extra.get("crop_scale", (0.08, 1.0))),
                    ratio=tuple(extra.get("crop_ratio", (3 / 4, 4 / 3))),
                    interpolation=interpolation,
                    antialias=True,
                )
            )
        else:
            steps.append(v2.Resize(size, interpolation=interpolation, antialias=True))
        hflip = float(extra.get("hflip", 0.5))
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        if config.recipe.randaugment:
            fill = tuple(min(255, round(255 * m)) for m in mean)  # timm fills with the mean pixel
            steps.append(TimmRandAugment(RandAugmentSpec.parse(config.recipe.randaugment), fill=fill))
    else:
        crop_pct = float(extra.get("eval_crop_pct", 1.0))
        resize = tuple(int(d / crop_pct) for d in size)
        # A single int keeps the aspect ratio (shorter side), as timm's eval transform does.
        steps.append(v2.Resize(resize[0] if height == width else resize, interpolation=interpolation, antialias=True))
        steps.append(v2.CenterCrop(size))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if train and config.recipe.random_erasing > 0:
        mode = extra.get("erasing_mode", "const")
        if mode not in ("const", "pixel"):
            raise UsageError(f"task {config.name!r}: erasing_mode {mode!r} is not 'const' or 'pixel'")
        value = 0 if mode == "const" else "random"
        steps.append(v2.RandomErasing(p=config.recipe.random_erasing, value=value))
    return v2.Compose(steps)
