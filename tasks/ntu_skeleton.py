"""Fast parser of NTU RGB+D raw `.skeleton` text files.

The format (Kinect v2, one file per sample, CRLF or LF endings, E-notation may occur):

    <frame count>
    per frame:  <body count>
                per body:  <body ID> + 9 body fields            (10 values on one line)
                           <joint count>                         (always 25)
                           per joint: x y z depthX depthY colorX colorY oW oX oY oZ trackingState

Speed: the whole file is read as bytes and converted in one compiled pass (`ntu_tokenize`); only
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

from suite.errors import CorruptDataError
from tasks.ntu_tokenize import NOT_AN_INT, tokenize

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
    if not data.strip():
        raise CorruptDataError(f"{source}: file is empty (expected a frame count on line 1)")
    tokens = tokenize(data)
    if tokens.error_offset >= 0:
        raise _corrupt(data, source, f"unparsable text at byte {tokens.error_offset}")
    layout = _walk_structure(tokens.values)
    if layout is None:
        raise _corrupt(data, source, "the counts do not match the values in the file")
    starts, expected_per_line, body_counts = layout
    per_line = tokens.tokens_per_line
    if not np.array_equal(per_line[per_line > 0], expected_per_line):
        raise _corrupt(data, source, "a line holds the wrong number of values")
    values = tokens.values
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


def _walk_structure(values: np.ndarray):
    """Token position of every body record, the value count each line must hold and the bodies
    per frame; None if the counts do not add up to the file."""
    total = len(values)
    value = values.item  # a Python float per call: ~3x cheaper than numpy scalar indexing
    if not _is_count(value(0)):
        return None
    position = 1
    starts, counts = [], []
    per_line = [1]
    for _ in range(int(value(0))):
        if position >= total or not _is_count(value(position)):
            return None
        bodies = int(value(position))
        counts.append(bodies)
        position += 1
        per_line.append(1)
        for _ in range(bodies):
            if position + _BODY_TOKENS > total or value(position + BODY_FIELDS) != JOINTS:
                return None
            starts.append(position)
            position += _BODY_TOKENS
            per_line.append(BODY_FIELDS)
            per_line.append(1)
            per_line.extend(_JOINT_LINES)
    if position != total:
        return None
    return (
        np.asarray(starts, dtype=np.int64),
        np.asarray(per_line, dtype=np.int32),
        np.asarray(counts, dtype=np.int32),
    )


_JOINT_LINES = [JOINT_FIELDS] * JOINTS


def _is_count(value: float) -> bool:
    return 0 <= value <= _MAX_COUNT and value == int(value)


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
