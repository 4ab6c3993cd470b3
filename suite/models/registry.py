"""The `spikformer` model family: every name is a tiny factory over one SpikformerConfig.

`spikformer-L-D` means L encoder blocks of width D, for any L >= 1 and D divisible by 8. The paper's
variants carry their stem, input and head count; other names get the stem's defaults and
heads = D / head width of the stem (32 cifar, 64 imagenet, 16 dvs: the paper's own ratios, which
reproduce every published variant's head count). Every field is overridable. The family
registers under the `spikformer_suite.models` entry-point group like any other (pyproject.toml);
`suite.models.create_model` finds it by the name's prefix.
"""

from __future__ import annotations

import dataclasses
import re

from suite.errors import UnknownNameError
from suite.models.family import TASK_OPTIONS, ModelFamily
from suite.models.spikformer import HEAD_DIM, STEM_POOLS, Spikformer, SpikformerConfig

NAME_PATTERN = re.compile(r"^spikformer-(\d+)-(\d+)$")

# Per stem: the input the official code was trained on.
STEM_DEFAULTS = {
    "cifar": dict(in_channels=3, img_size=(32, 32), num_classes=10, time_steps=4, qkv_bias=True),
    "imagenet": dict(in_channels=3, img_size=(224, 224), num_classes=1000, time_steps=4, qkv_bias=False),
    "dvs": dict(in_channels=2, img_size=(128, 128), num_classes=10, time_steps=16, qkv_bias=False),
}


@dataclasses.dataclass(frozen=True)
class PaperVariant:
    stem: str
    overrides: tuple[tuple[str, object], ...] = ()


PAPER_VARIANTS = {
    "spikformer-4-384": PaperVariant("cifar"),
    "spikformer-2-384": PaperVariant("cifar"),
    "spikformer-4-256": PaperVariant("cifar"),
    "spikformer-8-384": PaperVariant("imagenet"),
    "spikformer-6-512": PaperVariant("imagenet"),
    "spikformer-8-512": PaperVariant("imagenet"),
    "spikformer-10-512": PaperVariant("imagenet"),
    "spikformer-8-768": PaperVariant("imagenet"),
    # The official dvs code is its CIFAR10-DVS model, whose attention scale is 0.25.
    "spikformer-2-256": PaperVariant("dvs", (("attn_scale", 0.25),)),
}

OVERRIDABLE = tuple(f.name for f in dataclasses.fields(SpikformerConfig) if f.name not in ("depth", "dim"))


def list_models() -> list[str]:
    """The paper's variants, smallest first; any other `spikformer-L-D` name is valid too."""
    return sorted(PAPER_VARIANTS, key=lambda n: tuple(int(v) for v in NAME_PATTERN.match(n).groups())[::-1])


def _invalid_name(name: str, why: str) -> UnknownNameError:
    return UnknownNameError(
        f"unknown model {name!r} ({why}); valid names: {', '.join(list_models())}, "
        "or any 'spikformer-L-D' with L blocks and D dims (D divisible by 8)"
    )


def default_heads(dim: int, stem: str) -> int:
    heads = max(1, dim // HEAD_DIM[stem])
    while dim % heads:  # fall back to the nearest smaller head count that divides dim
        heads -= 1
    return heads


def spikformer_config(name: str, num_classes: int | None = None, **overrides) -> SpikformerConfig:
    match = NAME_PATTERN.match(name) if isinstance(name, str) else None
    if not match:
        raise _invalid_name(name, "names look like 'spikformer-4-384'")
    depth, dim = (int(v) for v in match.groups())
    if depth < 1 or dim < 8 or dim % 8:
        raise _invalid_name(name, "needs L >= 1 and D a positive multiple of 8")
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise UnknownNameError(f"unknown model option(s) {unknown}; valid options: {', '.join(OVERRIDABLE)}")

    variant = PAPER_VARIANTS.get(name)
    stem = overrides.get("stem") or (variant.stem if variant else "cifar")
    if stem not in STEM_POOLS:
        raise UnknownNameError(f"unknown stem {stem!r} for model {name!r}; valid stems: {', '.join(STEM_POOLS)}")
    fields = dict(STEM_DEFAULTS[stem], stem=stem, heads=default_heads(dim, stem))
    if variant and variant.stem == stem:
        fields.update(variant.overrides)
    fields.update(overrides)
    if num_classes is not None:
        fields["num_classes"] = num_classes
    if isinstance(fields["img_size"], int):
        fields["img_size"] = (fields["img_size"], fields["img_size"])
    fields["img_size"] = tuple(int(v) for v in fields["img_size"])
    return SpikformerConfig(depth=depth, dim=dim, **fields)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


FAMILY = ModelFamily(
    name="spikformer",
    summary="Spikformer (Zhou et al., ICLR 2023): spiking patch splitting + spiking self-attention",
    names=tuple(list_models()),
    resolve=spikformer_config,
    build=Spikformer,
    pattern=NAME_PATTERN.pattern[1:-1],  # the same regex, without its anchors (matched in full)
    pattern_help="any 'spikformer-L-D' with L blocks and D dims (D divisible by 8)",
    options=tuple(name for name in OVERRIDABLE if name not in TASK_OPTIONS),
    source="ZK-Zhou/spikformer (the official code; outputs equal in float64, tests/test_models.py)",
)
