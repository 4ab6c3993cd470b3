"""How board values become text, shared by the Markdown, CSV and HTML renderers.

Fixed formats (never the float's repr) so that regenerating from the same runs gives the same
bytes, and one dash for anything that was not measured.
"""

from __future__ import annotations

import math

DASH = "—"


def is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def integer(value, missing: str = DASH) -> str:
    return missing if is_missing(value) else str(int(value))


def fixed(value, decimals: int, missing: str = DASH) -> str:
    return missing if is_missing(value) else f"{float(value):.{decimals}f}"


def adaptive(value, missing: str = DASH) -> str:
    """Two decimals from 1 up, three significant digits below: 21.48 mJ and 0.00231 mJ both read."""
    if is_missing(value):
        return missing
    value = float(value)
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:#.3g}"


def machine(value) -> str:
    """CSV cells: six significant digits, empty when missing (what pandas reads back as NaN)."""
    return "" if is_missing(value) else f"{float(value):.6g}"


def top1_cell(mean, std, n) -> str:
    """`93.50 ± 0.71 (n=2)`; a single seed has no spread: `95.00 (n=1)`."""
    if is_missing(mean):
        return DASH
    if is_missing(std):
        return f"{float(mean):.2f} (n={int(n)})"
    return f"{float(mean):.2f} ± {float(std):.2f} (n={int(n)})"


def short_ids(run_ids: str, width: int = 8) -> str:
    return ", ".join(run_id[:width] for run_id in run_ids.split()) or DASH
