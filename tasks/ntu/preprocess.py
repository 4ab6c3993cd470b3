"""A parsed NTU skeleton file -> one fixed-size clip `[frames, bodies, 25, 3]` (x, y, z in metres).

The steps follow common NTU practice (2s-AGCN / CTR-GCN style preprocessing, re-implemented):
1. Track bodies by their Kinect body ID across frames.
2. Drop short-lived tracks (at most `MIN_TRACK_FRAMES` frames: usually spurious detections) unless
   nothing else is left, then keep the `max_bodies` tracks with the most motion (the joints'
   standard deviation over time), the most active one in slot 0.
3. Drop frames where none of the kept bodies is present (some files start with dozens of empty
   frames).
4. Centre: subtract the spine-middle joint of slot 0 in its first frame from every present joint,
   so the clip is translation-invariant but keeps the actors' motion and relative positions.
5. Resample to `frames` by linear interpolation in time; a body missing at either neighbouring
   frame is taken from the nearer one instead, so absent (zero) frames never blend into motion.
An absent body slot stays all zeros.
"""

from __future__ import annotations

import numpy as np

from suite.errors import CorruptDataError
from tasks.ntu.skeleton import JOINTS, SkeletonFile

MIN_TRACK_FRAMES = 11
SPINE_MID = 1  # Kinect v2 joint 2 (1-based): middle of the spine
COORDS = 3


def skeleton_to_clip(skeleton: SkeletonFile, frames: int, max_bodies: int, source: str = "") -> np.ndarray:
    """The fixed-size clip of one file; a file with no body in any frame raises CorruptDataError."""
    tracks = body_tracks(skeleton)  # [n_tracks, file_frames, 25, 3], present mask [n_tracks, file_frames]
    if tracks is None:
        raise CorruptDataError(
            f"{source or skeleton.name}: no body in any of its {skeleton.num_frames} frames; samples like "
            "this belong on the official missing-skeleton list (or pass skip_corrupt to skip it)"
        )
    xyz, present = tracks
    keep = _main_tracks(xyz, present, max_bodies)
    xyz, present = xyz[keep], present[keep]
    used = present.any(axis=0)
    xyz, present = xyz[:, used], present[:, used]
    origin = xyz[0, np.argmax(present[0]), SPINE_MID]
    xyz = np.where(present[:, :, None, None], xyz - origin, 0.0)
    clip = _resample(xyz, present, frames)  # [slots, frames, 25, 3]
    out = np.zeros((frames, max_bodies, JOINTS, COORDS), dtype=np.float32)
    out[:, : clip.shape[0]] = clip.transpose(1, 0, 2, 3)
    return out


def body_tracks(skeleton: SkeletonFile):
    """Per body ID (in ID order): xyz `[n_ids, file_frames, 25, 3]` float64 and presence
    `[n_ids, file_frames]`, or None for a file without bodies."""
    if skeleton.num_records == 0:
        return None
    ids, track_of_record = np.unique(skeleton.body_ids, return_inverse=True)
    xyz = np.zeros((ids.size, skeleton.num_frames, JOINTS, COORDS), dtype=np.float64)
    present = np.zeros((ids.size, skeleton.num_frames), dtype=bool)
    # Reversed so that, should an ID repeat within a frame, its first record wins.
    order = np.arange(skeleton.num_records)[::-1]
    xyz[track_of_record[order], skeleton.frame_index[order]] = skeleton.joints[order, :, :COORDS]
    present[track_of_record, skeleton.frame_index] = True
    return xyz, present


def _main_tracks(xyz: np.ndarray, present: np.ndarray, max_bodies: int) -> np.ndarray:
    length = present.sum(axis=1)
    candidates = np.flatnonzero(length > MIN_TRACK_FRAMES)
    if candidates.size == 0:
        candidates = np.arange(length.size)
    motion = np.array([_motion(xyz[t][present[t]]) for t in candidates])
    # Highest motion first; ties (e.g. single-frame tracks) go to the longer, then the earlier track.
    order = np.lexsort((candidates, -length[candidates], -motion))
    return candidates[order[:max_bodies]]


def _motion(frames_xyz: np.ndarray) -> float:
    """How much a body moves: each joint's standard deviation over time, summed over x, y, z and
    averaged over joints. (Pooling joints and frames into one deviation, as some NTU scripts do,
    also counts the body's spatial extent, so a large still body could outrank the actor.)"""
    if frames_xyz.shape[0] < 2:
        return 0.0
    return float(frames_xyz.std(axis=0).sum(axis=-1).mean())


def _resample(xyz: np.ndarray, present: np.ndarray, frames: int) -> np.ndarray:
    length = xyz.shape[1]
    position = np.linspace(0.0, length - 1, frames)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, length - 1)
    weight = (position - lower)[None, :, None, None]
    blended = (1.0 - weight) * xyz[:, lower] + weight * xyz[:, upper]
    nearest = np.where(weight[..., 0, 0] < 0.5, lower, upper)  # [1, frames] -> per slot below
    both = present[:, lower] & present[:, upper]
    fallback = xyz[:, nearest[0]]
    return np.where(both[:, :, None, None], blended, fallback).astype(np.float32)
