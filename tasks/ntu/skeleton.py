"""Fast parser of NTU RGB+D raw `.skeleton` text files.

The format (Kinect v2, one file per sample, CRLF or LF endings, E-notation may occur):

    <frame count>
    per frame:  <body count>
                per body:  <body ID> + 9 body fields            (10 values on one line)
                           <joint count>                         (always 25)
                           per joint: x y z depthX depthY colorX colorY oW oX oY oZ trackingState

Speed: the whole file is read as bytes and converted in one compiled pass (`tokenize.py`); only
the small frame/body structure is walked in Python, the joint blocks are gathered with one fancy
index, and the per-line value counts are checked against the structure in one array comparison (so
a short or long line is caught even when the totals add up). Body IDs are 17-digit integers that
float64 cannot hold: they come out of the same pass as exact int64, never through a float.

Errors: the fast path only notices *that* a file is malformed; `diagnose_skeleton_text` then walks
the text line by line to say *where* (line number, expected vs got). It runs on the error path only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from suite.errors import CorruptDataError
from tasks.ntu.tokenize import NOT_AN_INT, tokenize_to_scratch

JOINTS = 25
JOINT_FIELDS = 12  # x y z depthX depthY colorX colorY orientationW/X/Y/Z trackingState
BODY_FIELDS = 10  # bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence
#                   handRightState isRestricted leanX leanY trackingState
_BODY_TOKENS = BODY_FIELDS + 1 + JOINTS * JOINT_FIELDS  # body line, joint count, joint lines
_MAX_COUNT = 1_000_000  # a frame/body count above this is garbage, not data


@dataclass(frozen=True)
class SkeletonFile:
    """One parsed file. Body records are flattened over frames: record i is in frame `frame_index[i]`."""

    name: str
    body_counts: np.ndarray  # int32 [frames]: bodies listed in each frame
    frame_index: np.ndarray  # int32 [records]
    body_ids: np.ndarray  # int64 [records]: Kinect tracking IDs, exact
    body_info: np.ndarray  # float32 [records, 9]: the body line after the ID
    joints: np.ndarray  # float32 [records, 25, 12]

    @property
    def num_frames(self) -> int:
        return int(self.body_counts.shape[0])

    @property
    def num_records(self) -> int:
        return int(self.body_ids.shape[0])


def sample_name(path: str | os.PathLike) -> str:
    """`.../S001C001P001R001A001.skeleton` -> `S001C001P001R001A001`."""
    return Path(path).name.split(".", 1)[0]


def read_skeleton(path: str | os.PathLike) -> SkeletonFile:
    """Parse one `.skeleton` file; a malformed file raises CorruptDataError naming it and the line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorruptDataError(f"{path}: cannot be read: {err}") from err
    return parse_skeleton_bytes(data, source=str(path))


def parse_skeleton_bytes(data: bytes, source: str = "<bytes>") -> SkeletonFile:
    tokens = tokenize_to_scratch(data)  # views: everything kept below is gathered into new arrays
    if tokens.error_offset >= 0:
        raise _corrupt(data, source, f"unparsable text at byte {tokens.error_offset}")
    if not tokens.values.size:
        raise CorruptDataError(f"{source}: file is empty (expected a frame count on line 1)")
    values = tokens.values
    starts = np.empty(values.size // _BODY_TOKENS + 1, dtype=np.int64)
    body_counts = np.empty(values.size, dtype=np.int32)
    frames, bodies = _walk_structure(values, tokens.tokens_per_line, starts, body_counts)
    if frames < 0:
        raise _corrupt(data, source, "the counts do not match the values or lines of the file")
    starts, body_counts = starts[:bodies], body_counts[:frames]
    if starts.size:
        info = values[starts[:, None] + np.arange(1, BODY_FIELDS)]
        joints = values[(starts + BODY_FIELDS + 1)[:, None] + np.arange(JOINTS * JOINT_FIELDS)]
        body_ids = tokens.ints[starts]
        if (body_ids == NOT_AN_INT).any():
            raise _corrupt(data, source, "a body ID is not an integer")
    else:
        info = np.zeros((0, BODY_FIELDS - 1))
        joints = np.zeros((0, JOINTS * JOINT_FIELDS))
        body_ids = np.zeros(0, dtype=np.int64)
    return SkeletonFile(
        name=sample_name(source),
        body_counts=body_counts,
        frame_index=np.repeat(np.arange(body_counts.size, dtype=np.int32), body_counts),
        body_ids=body_ids,
        body_info=info.astype(np.float32),
        joints=joints.reshape(-1, JOINTS, JOINT_FIELDS).astype(np.float32),
    )


@njit(cache=True, nogil=True)
def _walk_structure(values, per_line, starts, body_counts):  # pragma: no cover - compiled
    """Fills the token position of every body record and the bodies per frame, checking that every
    count is a whole number, every joint count is 25, the counts use up exactly the file's values,
    and each line holds the number of values its role needs (blank lines aside).
    Returns (frames, bodies), or (-1, 0) when the file does not fit the format."""
    total = values.shape[0]
    line = _expect_line(per_line, 0, 1)
    frames = values[0]
    if line < 0 or not (0 <= frames <= _MAX_COUNT and frames == np.floor(frames)) or frames > total:
        return -1, 0
    position = 1
    bodies_seen = 0
    for frame in range(int(frames)):
        if position >= total:
            return -1, 0
        bodies = values[position]
        line = _expect_line(per_line, line, 1)
        if line < 0 or not (0 <= bodies <= _MAX_COUNT and bodies == np.floor(bodies)):
            return -1, 0
        body_counts[frame] = int(bodies)
        position += 1
        for _ in range(int(bodies)):
            if position + _BODY_TOKENS > total or values[position + BODY_FIELDS] != JOINTS:
                return -1, 0
            line = _expect_line(per_line, line, BODY_FIELDS)
            line = _expect_line(per_line, line, 1)
            for _ in range(JOINTS):
                line = _expect_line(per_line, line, JOINT_FIELDS)
            if line < 0:
                return -1, 0
            starts[bodies_seen] = position
            bodies_seen += 1
            position += _BODY_TOKENS
    if position != total:
        return -1, 0
    return int(frames), bodies_seen


@njit(cache=True, nogil=True, inline="always")
def _expect_line(per_line, line, count):  # pragma: no cover - compiled
    """Index after the next non-blank line if it holds `count` values, else -1 (and -1 stays -1)."""
    if line < 0:
        return -1
    while line < per_line.shape[0] and per_line[line] == 0:
        line += 1
    if line >= per_line.shape[0] or per_line[line] != count:
        return -1
    return line + 1


def _corrupt(data: bytes, source: str, fallback: str) -> CorruptDataError:
    return CorruptDataError(f"{source}: {diagnose_skeleton_text(data) or fallback}")


def diagnose_skeleton_text(data: bytes) -> str | None:
    """Line-by-line check of the format; the first problem as 'line N: expected X, got Y', else None."""
    lines = [(n, line.split()) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
    cursor = iter(lines)
    last_line = lines[-1][0] if lines else 0

    def take(what: str):
        item = next(cursor, None)
        if item is None:
            raise _Problem(f"file ends after line {last_line}: expected {what}")
        return item

    try:
        n, fields = take("the frame count")
        frames = _int_field(n, fields, "the frame count")
        for frame in range(frames):
            n, fields = take(f"the body count of frame {frame + 1} of {frames}")
            bodies = _int_field(n, fields, f"the body count of frame {frame + 1}")
            for body in range(bodies):
                where = f"body {body + 1} of frame {frame + 1}"
                n, fields = take(f"the body line of {where}")
                _check_values(n, fields, BODY_FIELDS, f"the body line of {where}")
                try:
                    int(fields[0])
                except ValueError:
                    raise _Problem(f"line {n}: expected an integer body ID, got {fields[0].decode(errors='replace')!r}")
                n, fields = take(f"the joint count of {where}")
                joints = _int_field(n, fields, f"the joint count of {where}")
                if joints != JOINTS:
                    raise _Problem(f"line {n}: expected joint count {JOINTS} for {where}, got {joints}")
                for joint in range(joints):
                    n, fields = take(f"joint {joint + 1} of {JOINTS} of {where}")
                    _check_values(n, fields, JOINT_FIELDS, f"joint {joint + 1} of {where}")
        extra = next(cursor, None)
        if extra is not None:
            raise _Problem(f"line {extra[0]}: expected end of file after {frames} frames, got more data")
    except _Problem as problem:
        return str(problem)
    return None


class _Problem(Exception):
    pass


def _int_field(n: int, fields: list[bytes], what: str) -> int:
    text = b" ".join(fields).decode(errors="replace")
    if len(fields) != 1:
        raise _Problem(f"line {n}: expected 1 value ({what}), got {len(fields)}: {text[:60]!r}")
    try:
        value = int(fields[0])
    except ValueError:
        raise _Problem(f"line {n}: expected an integer ({what}), got {text!r}") from None
    if not 0 <= value <= _MAX_COUNT:
        raise _Problem(f"line {n}: expected a count between 0 and {_MAX_COUNT} ({what}), got {value}")
    return value


def _check_values(n: int, fields: list[bytes], expected: int, what: str) -> None:
    if len(fields) != expected:
        raise _Problem(f"line {n}: expected {expected} values ({what}), got {len(fields)}")
    for field in fields:
        try:
            value = float(field)
        except ValueError:
            raise _Problem(f"line {n}: expected a number ({what}), got {field.decode(errors='replace')!r}") from None
        if not np.isfinite(value):
            raise _Problem(f"line {n}: expected a finite number ({what}), got {field.decode(errors='replace')!r}")
