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


CHECKPOINT_PREFIX = 8  # hex digits of a checkpoint's sha256 shown on the boards


def model_label(model: str, kind: str, checkpoint: str) -> str:
    """The model cell: a `suite eval` row names the checkpoint it evaluated, so it never reads as
    a model trained in the suite: `spikformer-4-384 [eval sha256:1a2b3c4d]`."""
    name = model or DASH
    if kind == "eval":
        return f"{name} [eval sha256:{checkpoint[:CHECKPOINT_PREFIX] or '?'}]"
    return name


def neurobench_cells(row) -> list[str]:
    """NeuroBench's columns of a board row (NEUROBENCH_HEADER order): synaptic operations in G per
    sample, sparsities as fractions, the footprint in MiB."""
    giga = lambda value: adaptive(value / 1e9 if not is_missing(value) else value)  # noqa: E731
    return [
        giga(row.nb_effective_acs),
        giga(row.nb_effective_macs),
        giga(row.nb_dense),
        fixed(row.nb_activation_sparsity, 4),
        fixed(row.nb_connection_sparsity, 4),
        fixed(row.nb_footprint_bytes / 2**20 if not is_missing(row.nb_footprint_bytes) else None, 2),
    ]


NEUROBENCH_HEADER = (
    "NB eff. ACs (G)", "NB eff. MACs (G)", "NB dense (G)", "NB act. sparsity", "NB conn. sparsity", "NB footprint (MiB)",
)


def has_neurobench(table) -> bool:
    return "nb_effective_acs" in table and bool(table["nb_effective_acs"].notna().any())
