"""Shared test setup: tests import helper modules from this folder (e.g. official_reference)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
