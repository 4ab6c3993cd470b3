"""Small NTU `.skeleton` files written in the real format (for tests and the parse benchmark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.real_samples import REAL_SAMPLES
NTU_SAMPLES = REAL_SAMPLES / "ntu"
BODY_ID_BASE = 72057594037927936  # 2**56: real Kinect IDs are 17-digit numbers just above it


def format_skeleton(frames: list[list[tuple[int, np.ndarray]]], newline: str = "\r\n") -> bytes:
    """frames[f] = [(body_id, joints [25, 12]), ...] -> the text of a .skeleton file.

    Body lines carry the ID plus 9 plausible fields; joint values are written with `repr`-like
    precision, the way Kinect exports print them (E-notation for tiny values).
    """
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 0.01119184 -0.256052 2")
            lines.append(str(len(joints)))
            lines.extend(" ".join(f"{v:.7g}" for v in joint) for joint in joints)
    return (newline.join(lines) + newline).encode()


def random_joints(rng: np.random.Generator, frames: int, offset: float = 0.0) -> np.ndarray:
    """[frames, 25, 12] values with real-looking ranges and a smooth motion over time."""
    t = np.linspace(0, 2 * np.pi, frames)[:, None, None]
    xyz = rng.normal(0, 0.3, (1, 25, 3)) + 0.2 * np.sin(t + rng.uniform(0, 6, (1, 25, 3)))
    xyz[..., 2] += 3.0  # ~3 m from the camera
    xyz[..., 0] += offset
    rest = rng.normal(0, 100, (frames, 25, 8))
    tracking = np.full((frames, 25, 1), 2.0)
    return np.concatenate([xyz, rest, tracking], axis=-1)


def write_sample(
    folder: Path, name: str, rng: np.random.Generator, frames: int = 30, bodies: int = 1, newline: str = "\r\n"
) -> Path:
    """A .skeleton file with `bodies` actors present in every frame."""
    tracks = [(BODY_ID_BASE + 1000 * b + int(rng.integers(0, 999)), random_joints(rng, frames, offset=b))
              for b in range(bodies)]
    content = format_skeleton([[(body_id, joints[f]) for body_id, joints in tracks] for f in range(frames)], newline)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.skeleton"
    path.write_bytes(content)
    return path
