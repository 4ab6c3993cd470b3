"""Where the real sample files of the public datasets live (see their SOURCES.md).

$SUITE_REAL_SAMPLES if set, else `../shared/data/real-samples` beside the checkout, else the
workplace's /work/shared copy (a clone elsewhere, e.g. in /tmp, still finds them).
"""

import os
from pathlib import Path

import pytest

from tests.helpers.prerequisites import require

_CANDIDATES = [
    os.environ.get("SUITE_REAL_SAMPLES"),
    Path(__file__).resolve().parents[3] / "shared/data/real-samples",
    "/work/shared/data/real-samples",
]
REAL_SAMPLES = next((Path(p) for p in _CANDIDATES if p and Path(p).is_dir()), Path(_CANDIDATES[1]))


def needs_real_samples(dataset: str) -> pytest.MarkDecorator:
    """Mark a test that reads the real files of REAL_SAMPLES/<dataset> (e.g. "ntu", "dvs")."""
    folder = REAL_SAMPLES / dataset
    return require(
        f"the real {dataset} sample files ({folder})",
        folder.is_dir(),
        "set SUITE_REAL_SAMPLES to a folder holding ntu/ and dvs/ (a copy of shared/data/real-samples)",
    )
