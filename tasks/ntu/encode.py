"""Skeleton clip `[frames, bodies, 25, 3]` -> Spikformer input, plus the training augmentation.

The image of a clip is `[3, H, W]`: channels = x, y, z; rows = frames; columns = joints, body after
body, each body padded from 25 to `joints_per_body` zero columns (26 by default, so W = 2 x 26 = 52
is divisible by 4, as the cifar stem's two max-pools like).

Two encoders:
- temporal (the default): the clip is cut into T consecutive segments of H frames and segment t is
  time step t, so a sample is `[T, 3, H, W]`. The T axis then carries real time: the LIF neurons
  integrate the motion as it happens, and every step sees new frames instead of a copy. It is also
  T times cheaper than the static encoder at the same number of frames (each step has H rows, not
  T x H), and averaging the per-step outputs is segment consensus, a proven recipe for actions.
- static: the whole clip (H frames) is one image, repeated over T by the model; a sample is
  `[3, H, W]`. Attention then spans the whole clip within each step.

The cache stores each clip at a fixed length; an encoder that needs another number of frames (e.g.
T x H for a different T) resamples it in time by nearest frame.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ENCODERS = ("temporal", "static")


def clip_to_image(clip: np.ndarray, joints_per_body: int) -> np.ndarray:
    """[frames, bodies, joints, 3] -> [3, frames, bodies * joints_per_body], zero-padded columns."""
    frames, bodies, joints, coords = clip.shape
    padded = np.zeros((frames, bodies, joints_per_body, coords), dtype=np.float32)
    padded[:, :, :joints] = clip
    return np.ascontiguousarray(padded.reshape(frames, bodies * joints_per_body, coords).transpose(2, 0, 1))


def resample_frames(clip: np.ndarray, frames: int) -> np.ndarray:
    """Nearest-frame resampling along axis 0 (the identity when the length already matches)."""
    if clip.shape[0] == frames:
        return clip
    index = np.rint(np.linspace(0, clip.shape[0] - 1, frames)).astype(np.int64)
    return clip[index]


class SkeletonEncoder:
    """Turns cached clips into model inputs; `frames_per_step` is H of the per-step image."""

    def __init__(self, kind: str, frames_per_step: int, joints_per_body: int):
        if kind not in ENCODERS:
            raise ValueError(f"encoder {kind!r} is not one of {ENCODERS}")
        self.kind = kind
        self.frames_per_step = frames_per_step
        self.joints_per_body = joints_per_body

    def __call__(self, clip: np.ndarray, time_steps: int) -> torch.Tensor:
        if self.kind == "static":
            image = clip_to_image(resample_frames(clip, self.frames_per_step), self.joints_per_body)
            return torch.from_numpy(image)
        clip = resample_frames(clip, time_steps * self.frames_per_step)
        image = clip_to_image(clip, self.joints_per_body)  # [3, T*H, W]
        channels, _, width = image.shape
        steps = image.reshape(channels, time_steps, self.frames_per_step, width).transpose(1, 0, 2, 3)
        return torch.from_numpy(np.ascontiguousarray(steps))


def augment_clip(clip: np.ndarray, max_angle: float, scale: float) -> np.ndarray:
    """Random rotation about the vertical (y) axis and random uniform scaling of the x, y, z values.

    Camera placement is the main nuisance in NTU (three cameras at -45, 0, +45 degrees), so a yaw
    rotation is the augmentation that matters; absent bodies stay exactly zero. Draws from torch's
    global RNG, which DataLoader seeds differently in every worker.
    """
    angle, factor = torch.rand(2).tolist()
    angle = (2 * angle - 1) * math.radians(max_angle)
    factor = 1 + (2 * factor - 1) * scale
    cos, sin = math.cos(angle) * factor, math.sin(angle) * factor
    rotation = np.array([[cos, 0.0, sin], [0.0, factor, 0.0], [-sin, 0.0, cos]], dtype=np.float32)
    return clip @ rotation.T
