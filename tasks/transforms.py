"""Image pipelines of the paper's recipes, made by timm as the official code makes them.

ImageNet: the official imagenet/train.py builds its loaders with timm's `create_loader`, whose
transform is timm's `create_transform`; this module calls `create_transform` with the recipe's
arguments: RandomResizedCrop(scale, ratio, bicubic) -> flip -> RandAugment(`aa`) -> tensor ->
normalize -> RandomErasing(reprob, remode, recount); eval: resize to size / crop_pct, centre crop.

CIFAR: the official cifar10/transforms_factory.py is the same pipeline with one change, its own
RandAugment (cifar10/aa_snn.py), whose op list is cut to five ops: Equalize, Rotate, ShearX,
TranslateXRel, TranslateYRel (aa_snn.py:563-600), each applied with probability 0.5. Here timm's
`rand_augment_transform` is given that list (`extra.randaugment_ops`) and replaces the
RandAugment stage of timm's pipeline; every other stage is timm's.

Per-task knobs come from the YAML's `extra` mapping:
  mean, std            normalization
  interpolation        "bicubic" | "bilinear" | ... for resizing (train and eval)
  crop_scale           RandomResizedCrop area range (official `scale`)
  crop_ratio           RandomResizedCrop aspect range (official `ratio`)
  hflip                horizontal flip probability
  color_jitter         colour jitter factor (timm leaves it out whenever RandAugment is on)
  eval_crop_pct        eval: resize to size / crop_pct, then centre-crop (official `crop_pct`)
  erasing_mode         RandomErasing mode (official `remode`): "const", "rand" or "pixel"
  erasing_count        RandomErasing boxes per image (official `recount`)
  randaugment_ops      the RandAugment op list (absent: timm's own, as for ImageNet)
"""

from __future__ import annotations

from timm.data import create_transform
from timm.data.auto_augment import _RAND_TRANSFORMS, rand_augment_transform
from timm.data.transforms import str_to_pil_interp
from torchvision import transforms

from suite.errors import PluginError
from suite.task import TaskConfig

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
ERASING_MODES = ("const", "rand", "pixel")
REQUIRED = ("mean", "std", "interpolation", "crop_scale", "crop_ratio", "hflip", "eval_crop_pct", "erasing_mode", "erasing_count")


def _knobs(config: TaskConfig) -> dict:
    extra = config.extra
    origin = f"task {config.name!r} extra"
    missing = [key for key in REQUIRED if key not in extra]
    if missing:
        raise PluginError(f"{origin}: missing {missing}; image tasks state every pipeline knob")
    if extra["interpolation"] not in INTERPOLATIONS:
        raise PluginError(f"{origin}: interpolation {extra['interpolation']!r} is not one of {', '.join(INTERPOLATIONS)}")
    if extra["erasing_mode"] not in ERASING_MODES:
        raise PluginError(f"{origin}: erasing_mode {extra['erasing_mode']!r} is not one of {', '.join(ERASING_MODES)}")
    unknown = sorted(set(extra.get("randaugment_ops", ())) - set(_RAND_TRANSFORMS))
    if unknown:
        raise PluginError(f"{origin}: randaugment_ops {unknown} are not timm RandAugment ops ({', '.join(_RAND_TRANSFORMS)})")
    return extra


def build_image_transform(config: TaskConfig, train: bool) -> transforms.Compose:
    """The train (augmenting) or eval pipeline for a static-image task: PIL image -> float [C, H, W]."""
    extra = _knobs(config)
    recipe = config.recipe
    _, height, width = config.input_shape
    common = dict(
        input_size=(3, height, width),
        interpolation=extra["interpolation"],
        mean=tuple(extra["mean"]),
        std=tuple(extra["std"]),
        crop_pct=float(extra["eval_crop_pct"]),
    )
    if not train:
        return create_transform(**common, is_training=False)
    timm_args = dict(
        **common,
        is_training=True,
        scale=tuple(extra["crop_scale"]),
        ratio=tuple(extra["crop_ratio"]),
        hflip=float(extra["hflip"]),
        color_jitter=extra.get("color_jitter"),
        auto_augment=recipe.randaugment,
        re_prob=recipe.random_erasing,
        re_mode=extra["erasing_mode"],
        re_count=int(extra["erasing_count"]),
    )
    ops = extra.get("randaugment_ops")
    if not (recipe.randaugment and ops):
        return create_transform(**timm_args)
    primary, _, final = create_transform(**timm_args, separate=True)
    randaugment = official_randaugment(recipe.randaugment, ops, mean=extra["mean"], size=min(height, width),
                                       interpolation=extra["interpolation"])
    return transforms.Compose([*primary.transforms, randaugment, *final.transforms])


def official_randaugment(spec: str, ops, *, mean, size: int, interpolation: str):
    """timm's RandAugment on the given op list, with the hparams timm's pipeline gives it."""
    hparams = dict(
        translate_const=int(size * 0.45),
        img_mean=tuple(min(255, round(255 * m)) for m in mean),
        interpolation=str_to_pil_interp(interpolation),
    )
    return rand_augment_transform(spec, hparams, transforms=list(ops))
