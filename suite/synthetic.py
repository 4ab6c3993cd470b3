"""Deterministic synthetic data with the exact shapes and classes of a real task.

Every task accepts `data="synthetic"` so that the whole pipeline (training, tuning, distributed
runs, leaderboards) can be exercised without downloading anything. The samples are built to be
*learnable*: each class has a fixed structure (drawn once from `class_seed`, shared by the train
and eval splits) and each sample adds its own jitter and noise (drawn from `seed` and the index).

Samples are generated lazily from `(seed, index)` through numpy's SeedSequence, so a dataset holds
no big tensors, costs nothing to build, and yields bit-identical samples in every process — which
distributed training relies on (each worker reads a different shard of the same dataset).

Three modalities:
- image    `[C, H, W]`: a smooth class pattern (a coarse random grid, bilinearly upsampled), shifted,
           re-scaled and noised per sample; values look like normalized images (about N(0, 1)).
- event    `[T, 2, H, W]`: non-negative event counts of a blob moving on a class-specific path;
           ON events (channel 0) where the blob arrives, OFF events (channel 1) where it leaves,
           plus sparse background noise events. Mostly zeros, like binned DVS recordings.
- skeleton `[C, H, W]` (H = frames, W = joints) or `[T, C, H, W]` (T segments of H frames): smooth
           class-specific joint trajectories (sums of sinusoids around a base pose) plus noise.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from suite.errors import UsageError

# Fixed salts keep the three kinds of random streams (class structure, per-sample draws,
# modality) independent even when seed == class_seed.
_CLASS_STREAM = 0x5EED_C1A5
_SAMPLE_STREAM = 0x5EED_5A4D
_SEED_MASK = 2**64 - 1  # SeedSequence needs non-negative entropy; negative seeds wrap around


def _linear_upsample_matrix(out_size: int, in_size: int) -> np.ndarray:
    """`[out, in]` matrix doing 1-D linear interpolation with half-pixel centres (align_corners=False)."""
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    if in_size == 1:
        matrix[:, 0] = 1.0
        return matrix
    centres = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
    centres = np.clip(centres, 0, in_size - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = (centres - low).astype(np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


class _ImagePatterns:
    """Class = a coarse random colour grid, upsampled into a smooth image."""

    def __init__(self, shape: tuple[int, ...], num_classes: int, class_seed: int):
        if len(shape) != 3:
            raise UsageError(f"synthetic image samples are [C, H, W]; got shape {shape}")
        self.channels, self.height, self.width = shape
        grid_h, grid_w = min(self.height, 6), min(self.width, 6)
        self.up_h = _linear_upsample_matrix(self.height, grid_h)
        self.up_w = _linear_upsample_matrix(self.width, grid_w)
        rng = np.random.default_rng([_CLASS_STREAM, class_seed & _SEED_MASK, 1])
        self.grids = rng.standard_normal((num_classes, self.channels, grid_h, grid_w), dtype=np.float32)
        self.max_shift = (max(self.height // 16, 0), max(self.width // 16, 0))

    def sample(self, label: int, rng: np.random.Generator) -> np.ndarray:
        pattern = self.up_h @ self.grids[label] @ self.up_w.T
        dy = int(rng.integers(-self.max_shift[0], self.max_shift[0] + 1))
        dx = int(rng.integers(-self.max_shift[1], self.max_shift[1] + 1))
        pattern = np.roll(pattern, (dy, dx), axis=(1, 2))
        gain = rng.uniform(0.8, 1.2)
        brightness = rng.normal(0.0, 0.2, size=(self.channels, 1, 1)).astype(np.float32)
        noise = rng.standard_normal(pattern.shape, dtype=np.float32)
        noise *= 0.7
        noise += gain * pattern + brightness
        return noise


class _EventPatterns:
    """Class = a blob of a given size moving on an elliptic path (centre, radii, speed, phase)."""

    peak_rate = 3.0  # expected events per pixel and frame at the blob's sharpest edge
    background_rate = 0.01  # expected noise events per pixel, polarity and frame

    def __init__(self, shape: tuple[int, ...], num_classes: int, class_seed: int):
        if len(shape) != 4 or shape[1] != 2:
            raise UsageError(f"synthetic event samples are [T, 2, H, W]; got shape {shape}")
        self.steps, _, self.height, self.width = shape
        rng = np.random.default_rng([_CLASS_STREAM, class_seed & _SEED_MASK, 2])
        self.centres = rng.uniform(0.3, 0.7, size=(num_classes, 2))  # (y, x) as fractions
        self.radii = rng.uniform(0.08, 0.25, size=(num_classes, 2)) * rng.choice([-1, 1], size=(num_classes, 2))
        self.cycles = rng.uniform(0.5, 1.5, size=num_classes)  # turns of the path over the clip
        self.phases = rng.uniform(0, 2 * math.pi, size=num_classes)
        self.blob_sizes = rng.uniform(0.06, 0.12, size=num_classes)
        self.ys = (np.arange(self.height, dtype=np.float32) + 0.5) / self.height
        self.xs = (np.arange(self.width, dtype=np.float32) + 0.5) / self.width

    def sample(self, label: int, rng: np.random.Generator) -> np.ndarray:
        centre = self.centres[label] + rng.normal(0, 0.03, size=2)
        speed = self.cycles[label] * rng.uniform(0.9, 1.1)
        phase = self.phases[label] + rng.normal(0, 0.3)
        sigma = self.blob_sizes[label] * rng.uniform(0.9, 1.1)
        # One frame before the clip so the first frame has a predecessor to differ from.
        t = np.arange(-1, self.steps) / self.steps
        angle = 2 * math.pi * speed * t + phase
        ys = centre[0] + self.radii[label, 0] * np.sin(angle)
        xs = centre[1] + self.radii[label, 1] * np.cos(angle)
        gy = np.exp(-((self.ys[None, :] - ys[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
        gx = np.exp(-((self.xs[None, :] - xs[:, None]) ** 2) / (2 * sigma**2)).astype(np.float32)
        intensity = gy[:, :, None] * gx[:, None, :]  # [T+1, H, W]
        change = np.diff(intensity, axis=0)
        scale = self.peak_rate * rng.uniform(0.7, 1.3) / max(float(np.abs(change).max()), 1e-6)
        rates = np.empty((self.steps, 2, self.height, self.width), dtype=np.float32)
        np.maximum(change, 0, out=rates[:, 0])
        np.maximum(-change, 0, out=rates[:, 1])
        rates *= scale
        # Poisson draws only where the blob is: most of the sensor sees nothing but noise.
        active = rates > 1e-3
        noise_events = rng.poisson(self.background_rate * rates.size)
        counts = np.bincount(rng.integers(0, rates.size, size=noise_events), minlength=rates.size)
        counts = counts.astype(np.float32).reshape(rates.shape)
        counts[active] += rng.poisson(rates[active])
        return counts


class _SkeletonPatterns:
    """Class = a base pose plus per-joint sinusoidal motion of class-specific joints and tempo."""

    def __init__(self, shape: tuple[int, ...], num_classes: int, class_seed: int):
        if len(shape) == 3:
            self.segments, (self.coords, self.frames, self.joints) = None, shape
        elif len(shape) == 4:
            self.segments, self.coords, self.frames, self.joints = shape
        else:
            raise UsageError(f"synthetic skeleton samples are [C, H, W] or [T, C, H, W]; got shape {shape}")
        rng = np.random.default_rng([_CLASS_STREAM, class_seed & _SEED_MASK, 3])
        body = rng.uniform(-0.5, 0.5, size=(self.coords, self.joints))  # one skeleton for all classes
        self.poses = body + 0.1 * rng.standard_normal((num_classes, self.coords, self.joints))
        moving = rng.random((num_classes, 1, self.joints)) < 0.35
        self.amplitudes = np.abs(rng.normal(0, 0.3, size=(num_classes, self.coords, self.joints))) * moving
        self.cycles = rng.uniform(0.5, 3.0, size=num_classes)  # periods over the whole clip
        self.phases = rng.uniform(0, 2 * math.pi, size=(num_classes, self.coords, self.joints))

    def sample(self, label: int, rng: np.random.Generator) -> np.ndarray:
        total = self.frames * (self.segments or 1)
        t = np.arange(total) / total
        speed = self.cycles[label] * rng.uniform(0.85, 1.15)
        start = rng.uniform(0, 0.5)
        angle = 2 * math.pi * speed * t[None, :, None] + self.phases[label][:, None, :] + start
        motion = rng.uniform(0.8, 1.2) * self.amplitudes[label][:, None, :] * np.sin(angle)
        offset = rng.normal(0, 0.2, size=(self.coords, 1, 1))
        noise = 0.05 * rng.standard_normal((self.coords, total, self.joints))
        clip = (self.poses[label][:, None, :] + motion + offset + noise).astype(np.float32)  # [C, frames, V]
        if self.segments is None:
            return clip
        segments = clip.reshape(self.coords, self.segments, self.frames, self.joints)
        return np.ascontiguousarray(segments.transpose(1, 0, 2, 3))


_PATTERNS = {"image": _ImagePatterns, "event": _EventPatterns, "skeleton": _SkeletonPatterns}


class SyntheticDataset(Dataset):
    """A lazily generated, deterministic dataset: `(x float32 tensor of sample_shape, label int)`.

    `class_seed` fixes the class structure (give train and eval the same one), `seed` the
    per-sample jitter and noise (give them different ones). Labels cycle through the classes,
    so every class has `size // num_classes` or one more samples.
    """

    synthetic = True  # lets the run engine label its results as synthetic

    def __init__(
        self,
        modality: str,
        sample_shape: Sequence[int],
        num_classes: int,
        size: int,
        seed: int = 0,
        class_seed: int = 0,
    ):
        if modality not in _PATTERNS:
            raise UsageError(f"synthetic data: unknown modality {modality!r}; valid: {', '.join(_PATTERNS)}")
        if num_classes < 2:
            raise UsageError(f"synthetic data: num_classes must be >= 2, got {num_classes}")
        if size < 1:
            raise UsageError(f"synthetic data: size must be >= 1, got {size}")
        self.sample_shape = tuple(int(d) for d in sample_shape)
        if min(self.sample_shape, default=0) < 1:
            raise UsageError(f"synthetic data: every dimension of sample_shape must be >= 1, got {self.sample_shape}")
        self.modality = modality
        self.num_classes = int(num_classes)
        self.size = int(size)
        self.seed = int(seed)
        self.class_seed = int(class_seed)
        self._patterns = _PATTERNS[modality](self.sample_shape, self.num_classes, self.class_seed)

    def __len__(self) -> int:
        return self.size

    def label_of(self, index: int) -> int:
        return index % self.num_classes

    @property
    def targets(self) -> list[int]:
        """All labels, without generating any sample (for samplers and class counts)."""
        return [self.label_of(i) for i in range(self.size)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = operator.index(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"synthetic dataset index {index} out of range for size {self.size}")
        label = self.label_of(index)
        rng = np.random.default_rng([_SAMPLE_STREAM, self.seed & _SEED_MASK, index])
        sample = self._patterns.sample(label, rng)
        return torch.from_numpy(sample), label

    def __repr__(self) -> str:
        return (
            f"SyntheticDataset(modality={self.modality!r}, sample_shape={self.sample_shape}, "
            f"num_classes={self.num_classes}, size={self.size}, seed={self.seed}, class_seed={self.class_seed})"
        )
