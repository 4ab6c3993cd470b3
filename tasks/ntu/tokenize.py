"""Whitespace-separated decimal text -> numbers in one compiled pass (the hot loop of NTU parsing).

`np.fromstring`, pandas' and pyarrow's CSV readers all spend ~2 ms on a 360 KB skeleton file; a
plain Python line parser spends ~8 ms. One numba-compiled scan over the bytes does it in well under
a millisecond and gives everything the structure walk needs in the same pass: each token's float
value, its exact int64 value when it is an integer literal (17-digit body IDs do not fit a float64),
and how many tokens each line holds (so a short or long line is still caught).

Floats are exact: a token with at most 15 significant digits and a decimal exponent within +-22 is
converted with one correctly rounded multiply or divide (Clinger's fast path: both operands are exact
doubles); integers go through the exact uint64 -> double conversion; anything else (never seen in NTU
data) is listed in `slow` and converted by Python's float().
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numba import njit

NOT_AN_INT = np.iinfo(np.int64).min  # `ints` entry of a token with a '.' or an exponent
_POW10 = 10.0 ** np.arange(23)  # exactly representable doubles 1e0..1e22
_MAX_EXPONENT = 100_000
_SLOW_CAPACITY = 64  # tokens for Python's float(); NTU files have none


@dataclass(frozen=True)
class Tokens:
    values: np.ndarray  # float64 [tokens]
    ints: np.ndarray  # int64 [tokens]; NOT_AN_INT where the token is not an integer literal
    tokens_per_line: np.ndarray  # int32 [lines]; 0 for blank lines
    error_offset: int  # byte offset of the first malformed token, -1 if none


def tokenize(data: bytes) -> Tokens:
    """The numbers of `data`, in arrays of their own."""
    tokens = tokenize_to_scratch(data)
    return Tokens(tokens.values.copy(), tokens.ints.copy(), tokens.tokens_per_line.copy(), tokens.error_offset)


def tokenize_to_scratch(data: bytes) -> Tokens:
    """Like `tokenize`, but the arrays are views of this thread's scratch buffers: valid only until
    its next call (for callers that copy what they keep, as the skeleton parser does)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    values, ints, per_line, slow = _scratch_buffers(len(data))
    per_line[: _scratch.lines_used] = 0
    count, n_slow, lines, error = _scan(buffer, _POW10, values, ints, per_line, slow)
    if n_slow > slow.shape[0]:  # the scan counted past the end of `slow`: rerun with room for all
        slow = np.empty((n_slow, 2), dtype=np.int64)
        per_line[:lines] = 0
        count, n_slow, lines, error = _scan(buffer, _POW10, values, ints, per_line, slow)
    _scratch.lines_used = lines
    if n_slow:  # rare: over 15 significant digits in a non-integer, or a huge exponent
        for index, (begin, end) in zip(_slow_indices(buffer, slow[:n_slow]), slow[:n_slow].tolist()):
            values[index] = float(data[begin:end])
    return Tokens(values[:count], ints[:count], per_line[:lines], int(error))


_scratch = threading.local()


def _scratch_buffers(size: int):
    """Per-thread output buffers for `_scan`, grown as needed and reused from file to file.

    Fresh multi-megabyte arrays per file cost page faults on every first touch (as much as the scan
    itself); reused ones stay mapped. They are allocated in Python, not in the compiled loop, because
    arrays created or re-bound inside it get reference-counted on every iteration (2-3x slower).
    """
    capacity = size // 2 + 1  # a token needs at least one character and one separator
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None or buffers[0].shape[0] < capacity:
        capacity = max(capacity, 2 * (buffers[0].shape[0] if buffers else 0))
        buffers = (
            np.empty(capacity, dtype=np.float64),
            np.empty(capacity, dtype=np.int64),
            np.zeros(2 * capacity, dtype=np.int32),  # tokens per line; a line is at least 1 byte
            np.empty((_SLOW_CAPACITY, 2), dtype=np.int64),
        )
        _scratch.buffers = buffers
        _scratch.lines_used = 0
    return buffers


def _slow_indices(buffer: np.ndarray, slow: np.ndarray) -> list[int]:
    """Token index of each slow token: the number of token starts before its start offset."""
    is_token = buffer > 32
    starts = np.flatnonzero(is_token & ~np.concatenate(([False], is_token[:-1])))
    return np.searchsorted(starts, slow[:, 0]).tolist()


@njit(cache=True, nogil=True)
def _scan(buf, pow10, values, ints, per_line, slow):  # pragma: no cover - compiled; tested via tokenize()
    """Fills the output arrays; returns (tokens, slow tokens, lines, offset of a bad token or -1)."""
    n = buf.shape[0]
    count = 0
    n_slow = 0
    line = 0
    i = 0
    while i < n:
        c = buf[i]
        if c == 10:
            line += 1
            i += 1
            continue
        if c == 32 or c == 13 or c == 9:
            i += 1
            continue
        start = i
        negative = False
        if c == 45 or c == 43:
            negative = c == 45
            i += 1
        mantissa = np.uint64(0)
        digits = 0
        fraction = 0
        dot = False
        while i < n:
            c = buf[i]
            if 48 <= c <= 57:
                if digits < 19:  # more digits than uint64 holds: the slow path re-reads the text
                    mantissa = mantissa * np.uint64(10) + np.uint64(c - 48)
                    if dot:
                        fraction += 1
                digits += 1
                i += 1
            elif c == 46 and not dot:
                dot = True
                i += 1
            else:
                break
        exponent = 0
        has_exponent = False
        if i < n and (buf[i] == 101 or buf[i] == 69):
            has_exponent = True
            i += 1
            exponent_negative = False
            if i < n and (buf[i] == 45 or buf[i] == 43):
                exponent_negative = buf[i] == 45
                i += 1
            exponent_digits = 0
            while i < n and 48 <= buf[i] <= 57:
                if exponent < _MAX_EXPONENT:
                    exponent = exponent * 10 + (buf[i] - 48)
                exponent_digits += 1
                i += 1
            if exponent_digits == 0:
                return count, n_slow, line + 1, start
            if exponent_negative:
                exponent = -exponent
        if digits == 0 or (i < n and buf[i] > 32):
            return count, n_slow, line + 1, start
        if not dot and not has_exponent and digits <= 18:
            value = float(mantissa)  # exact uint64 -> double rounding
            ints[count] = -np.int64(mantissa) if negative else np.int64(mantissa)
        else:
            ints[count] = -9223372036854775807 - 1  # NOT_AN_INT
            power = exponent - fraction
            if digits <= 15 and -22 <= power <= 22:
                value = float(mantissa)
                value = value * pow10[power] if power >= 0 else value / pow10[-power]
            else:
                value = np.nan
                if n_slow < slow.shape[0]:
                    slow[n_slow, 0] = start
                    slow[n_slow, 1] = i
                n_slow += 1
        values[count] = -value if negative else value
        per_line[line] += 1
        count += 1
    return count, n_slow, line + 1, -1
