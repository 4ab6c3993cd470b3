"""Where the real sample files of the public datasets live (see their SOURCES.md).

$SUITE_REAL_SAMPLES if set, else `../shared/data/real-samples` beside the checkout, else the
workplace's /work/shared copy (a clone elsewhere, e.g. in /tmp, still finds them).
"""

import os
from pathlib import Path

_CANDIDATES = [
    os.environ.get("SUITE_REAL_SAMPLES"),
    Path(__file__).resolve().parents[2] / "shared/data/real-samples",
    "/work/shared/data/real-samples",
]
REAL_SAMPLES = next((Path(p) for p in _CANDIDATES if p and Path(p).is_dir()), Path(_CANDIDATES[1]))
