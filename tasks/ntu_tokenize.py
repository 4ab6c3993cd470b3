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

from dataclasses import dataclass

import numpy as np
from numba import njit

NOT_AN_INT = np.iinfo(np.int64).min  # `ints` entry of a token with a '.' or an exponent
_POW10 = 10.0 ** np.arange(23)  # exactly representable doubles 1e0..1e22
_MAX_EXPONENT = 100_000


@dataclass(frozen=True)
class Tokens:
    values: np.ndarray  # float64 [tokens]
    ints: np.ndarray  # int64 [tokens]; NOT_AN_INT where the token is not an integer literal
    tokens_per_line: np.ndarray  # int32 [lines]; 0 for blank lines
    error_offset: int  # byte offset of the first malformed token, -1 if none


def tokenize(data: bytes) -> Tokens:
    buffer = np.frombuffer(data, dtype=np.uint8)
    values, ints, per_line, slow, error = _scan(buffer, _POW10, data.count(b"\n") + 1)
    if len(slow):  # rare: over 15 significant digits in a non-integer, or a huge exponent
        for index, (start, end) in zip(_slow_indices(buffer, slow), slow.tolist()):
            values[index] = float(data[start:end])
    return Tokens(values, ints, per_line, int(error))


def _slow_indices(buffer: np.ndarray, slow: np.ndarray) -> list[int]:
    """Token index of each slow token: the number of token starts before its start offset."""
    is_token = buffer > 32
    starts = np.flatnonzero(is_token & ~np.concatenate(([False], is_token[:-1])))
    return np.searchsorted(starts, slow[:, 0]).tolist()


@njit(cache=True, nogil=True)
def _scan(buf, pow10, lines):  # pragma: no cover - compiled; exercised through tokenize()
    n = buf.shape[0]
    capacity = n // 2 + 1  # a token needs at least one character and one separator
    values = np.empty(capacity, np.float64)
    ints = np.empty(capacity, np.int64)
    per_line = np.zeros(lines, np.int32)
    slow = np.empty((16, 2), np.int64)
    n_slow = 0
    count = 0
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
                return values[:0], ints[:0], per_line[:0], slow[:0], start
            if exponent_negative:
                exponent = -exponent
        if digits == 0 or (i < n and buf[i] > 32):
            return values[:0], ints[:0], per_line[:0], slow[:0], start
        is_int = not dot and not has_exponent
        if is_int and digits <= 18:
            value = float(mantissa)  # exact uint64 -> double rounding
            ints[count] = -np.int64(mantissa) if negative else np.int64(mantissa)
        else:
            ints[count] = -9223372036854775807 - 1
            power = exponent - fraction
            if digits <= 15 and -22 <= power <= 22:
                value = float(mantissa)
                value = value * pow10[power] if power >= 0 else value / pow10[-power]
            else:
                value = np.nan
                if n_slow == slow.shape[0]:
                    grown = np.empty((2 * n_slow, 2), np.int64)
                    grown[:n_slow] = slow
                    slow = grown
                slow[n_slow, 0] = start
                slow[n_slow, 1] = i
                n_slow += 1
        values[count] = -value if negative else value
        per_line[line] += 1
        count += 1
    return values[:count], ints[:count], per_line[: line + 1], slow[:n_slow], -1
