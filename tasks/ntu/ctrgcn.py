"""CTR-GCN's NTU preprocessing (Chen et al., ICCV 2021), re-implemented on the suite's parsed files.

Learned from the public code (github.com/Uason-Chen/CTR-GCN: data/ntu/get_raw_skes_data.py,
data/ntu120/get_raw_denoised_data.py, data/ntu/seq_transformation.py, feeders/feeder_ntu.py,
feeders/tools.py, config/nturgbd-cross-subject/default.yaml), the pipeline most skeleton papers
since 2s-AGCN report their NTU numbers with.

Once per file (`ctrgcn_sequence`, stored in the cache):
1. Frames that list no body are dropped.
2. A file with more than one body ID is denoised:
   a. length: a body ID seen in at most 11 frames is dropped;
   b. spread: while more than one body is left, a body whose frames are at least 69.754% "wide"
      (x extent above 0.8 x the y extent: an object or a lying shadow, not a standing person) is
      dropped; a body with fewer wide frames has its motion re-measured without them (the smaller
      value counts);
   c. motion: the remaining bodies are ranked by motion, the summed variance of x, y and z over all
      its joints and frames. The most moving body is actor 1 (slot 0). Each further body, in rank
      order, joins slot 0 when its frames do not overlap slot 0's span (the same person under a new
      ID), else slot 1 when they do not overlap slot 1's span, else it is left out.
   Then frames where no kept body is present are dropped.
3. Centre: the spine-middle joint (Kinect joint 2) of actor 1 in its first frame is subtracted from
   every present joint; an absent body stays all zeros.
Per sample, each time it is read (`crop_bounds` + `resize_frames`, the feeder's valid_crop_resize):
4. Train: a random crop of p x the frames, p ~ U[0.5, 1] but at least 64 frames (all of them when
   the sequence is shorter), at a random start. Eval: the centre 95% (2.5% cut at each end,
   rounded down). The crop is resized to the window (64 frames) by linear interpolation in time with
   half-pixel centres (what the feeder's bilinear F.interpolate does along time).
5. Train augmentation (the configs' random_rot): one rotation about x, y and z, each angle
   ~ U[-0.3, 0.3] rad (`random_rotation`).

Where this differs from the scripts, and why:
- a body is placed at the frames it was seen in; the scripts assume a body ID's frames follow one
  another from its first appearance, which shifts a body that vanishes and comes back;
- "absent" means no record for the body in that frame, not coordinates summing to exactly 0;
- a file whose every body is short keeps them all (the scripts would stop on it; NTU has none);
- the motion-range filter (denoising_by_motion, 0.089925..2) and the per-frame spine scaling
  (frame_translation) are defined in the scripts but never called, so neither is applied here;
- the cache keeps at most `MAX_FRAMES` = 300 frames per sample, NTU's longest sequence (the scripts
  pad every sample to the data set's maximum, 300); a longer file is resampled to 300 frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from suite.errors import CorruptDataError
from tasks.ntu.preprocess import MIN_TRACK_FRAMES, SPINE_MID, body_tracks
from tasks.ntu.skeleton import SkeletonFile

SLOTS = 2  # actor 1 and actor 2: the scripts' two 75-value halves of a frame
MAX_FRAMES = 300  # cache capacity per sample: NTU's longest sequence ("max_num_frames ... # 300")
WIDE_RATIO = 0.8  # noise_spr_thres1: a frame is wide when x extent > 0.8 x y extent
WIDE_SHARE = 0.69754  # noise_spr_thres2: a body with this share of wide frames is noise
TRAIN_CROP = (0.5, 1.0)  # train_feeder_args p_interval
EVAL_CROP = 0.95  # test_feeder_args p_interval
MIN_CROP = 64  # valid_crop_resize's lower bound on a training crop (a literal there)
ROTATION = 0.3  # random_rot's theta, radians


def ctrgcn_sequence(skeleton: SkeletonFile, source: str = "") -> np.ndarray:
    """The denoised, centred sequence `[frames, 2, 25, 3]` float32 of one file (steps 1-3); its
    length is the number of frames where a kept body is present."""
    tracks = body_tracks(skeleton)
    if tracks is None:
        raise CorruptDataError(
            f"{source or skeleton.name}: no body in any of its {skeleton.num_frames} frames; samples like "
            "this belong on the official missing-skeleton list (or pass skip_corrupt to skip it)"
        )
    xyz, present = tracks
    listed = present.any(axis=0)
    # The scripts visit bodies in the order they first appear in the file (a dict filled while reading).
    _, first_record = np.unique(skeleton.body_ids, return_index=True)
    appearance = np.argsort(first_record, kind="stable")
    xyz, present = xyz[appearance][:, listed], present[appearance][:, listed]
    ranked = _denoise(xyz, present) if len(appearance) > 1 else [0]
    sequence = np.zeros((SLOTS, xyz.shape[1], *xyz.shape[2:]))
    occupied = np.zeros((SLOTS, xyz.shape[1]), dtype=bool)
    for slot, members in enumerate(_slots(present, ranked)):
        for track in members:  # in rank order: a later body overwrites a shared boundary frame
            sequence[slot][present[track]] = xyz[track][present[track]]
            occupied[slot] |= present[track]
    kept = occupied.any(axis=0)
    sequence, occupied = sequence[:, kept], occupied[:, kept]
    origin = sequence[0, np.argmax(occupied[0]), SPINE_MID]
    sequence = np.where(occupied[:, :, None, None], sequence - origin, 0.0)
    return np.ascontiguousarray(sequence.transpose(1, 0, 2, 3), dtype=np.float32)


def _denoise(xyz: np.ndarray, present: np.ndarray) -> list[int]:
    """Steps 2a-2c: the kept tracks, most moving first (ties keep the order of appearance)."""
    length = present.sum(axis=1)
    alive = [t for t in range(len(length)) if length[t] > MIN_TRACK_FRAMES] or list(range(len(length)))
    if len(alive) == 1:
        return alive
    motion = {t: _motion(xyz[t][present[t]]) for t in alive}
    extent = np.ptp(xyz[..., :2], axis=2)  # [tracks, frames, (x, y)] over the 25 joints
    wide = (extent[..., 0] > WIDE_RATIO * extent[..., 1]) & present
    for track in list(alive):
        if len(alive) == 1:
            break
        noisy = int(wide[track].sum())
        if noisy == 0:
            continue
        if noisy / length[track] >= WIDE_SHARE:
            alive.remove(track)
        else:
            motion[track] = min(motion[track], _motion(xyz[track][present[track] & ~wide[track]]))
    return sorted(alive, key=lambda t: -motion[t])


def _motion(frames_xyz: np.ndarray) -> float:
    """The scripts' motion: the variance of x, y and z over every joint of every frame, summed
    (so, unlike the suite's own measure, a body's spatial extent counts too)."""
    return float(frames_xyz.reshape(-1, 3).var(axis=0).sum())


def _slots(present: np.ndarray, ranked: list[int]) -> tuple[list[int], list[int]]:
    """Which tracks fill actor 1's and actor 2's slots. Spans are (first, last) frames; two spans
    "overlap" only when they share more than one frame, as in the scripts."""
    frames = [np.flatnonzero(present[t]) for t in ranked]
    spans = [(int(f[0]), int(f[-1])) for f in frames]
    actor1, actor2 = [ranked[0]], []
    (start1, end1), (start2, end2) = spans[0], (0, 0)  # the scripts start actor 2 at a virtual [0, 0]
    for track, (start, end) in zip(ranked[1:], spans[1:]):
        if min(end1, end) - max(start1, start) <= 0:
            actor1.append(track)
            start1, end1 = min(start, start1), max(end, end1)
        elif min(end2, end) - max(start2, start) <= 0:
            actor2.append(track)
            start2, end2 = min(start, start2), max(end, end2)
    return actor1, actor2


def fit_capacity(sequence: np.ndarray, capacity: int = MAX_FRAMES) -> tuple[np.ndarray, int]:
    """`sequence` zero-padded to `capacity` frames (resampled to it when longer), and its length."""
    if sequence.shape[0] > capacity:
        sequence = resize_frames(sequence, capacity)
    padded = np.zeros((capacity, *sequence.shape[1:]), dtype=np.float32)
    padded[: sequence.shape[0]] = sequence
    return padded, int(sequence.shape[0])


def crop_bounds(frames: int, train: bool, generator: torch.Generator | None = None) -> tuple[int, int]:
    """(start, length) of step 4's crop of a `frames`-long sequence. Random draws come from torch's
    RNG (`generator`, else the global one, which DataLoader seeds differently in every worker)."""
    if not train:
        cut = int((1 - EVAL_CROP) * frames / 2)
        return cut, frames - 2 * cut
    low, high = TRAIN_CROP
    share = low + (high - low) * torch.rand((), generator=generator).item()
    length = min(max(math.floor(frames * share), MIN_CROP), frames)
    start = int(torch.randint(0, frames - length + 1, (), generator=generator))
    return start, length


def resize_frames(sequence: np.ndarray, frames: int) -> np.ndarray:
    """`[T, ...]` -> `[frames, ...]` float32 by linear interpolation in time with half-pixel centres,
    up or down (torch's F.interpolate, align_corners=False: along time, the feeder's bilinear call)."""
    length = sequence.shape[0]
    series = torch.from_numpy(np.array(sequence, dtype=np.float32)).reshape(length, -1).T  # a copy: maps are read-only
    resized = F.interpolate(series[None], size=frames, mode="linear", align_corners=False)[0]
    return np.ascontiguousarray(resized.T.reshape(frames, *sequence.shape[1:]).numpy())


def crop_resize(sequence: np.ndarray, window: int, train: bool) -> np.ndarray:
    """Step 4 on one sequence `[frames, ...]` (its valid frames only): `[window, ...]`."""
    start, length = crop_bounds(sequence.shape[0], train)
    return resize_frames(sequence[start : start + length], window)


def rotation_matrix(angles) -> np.ndarray:
    """R = Rz(c) Ry(b) Rx(a) for angles (a, b, c) in radians, float32. (The scripts build each factor
    with the opposite sign convention; with angles drawn symmetrically about 0 that is the same
    distribution of rotations.)"""
    (ca, cb, cc), (sa, sb, sc) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


def random_rotation(clip: np.ndarray, max_angle: float = ROTATION) -> np.ndarray:
    """Step 5 on a clip `[frames, bodies, joints, 3]`: one rotation for the whole clip (absent,
    all-zero bodies stay zero). Draws from torch's global RNG, like `crop_bounds`."""
    angles = ((2 * torch.rand(3) - 1) * max_angle).tolist()
    return (clip.reshape(-1, 3) @ rotation_matrix(angles).T).reshape(clip.shape)
