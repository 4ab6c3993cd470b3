"""The crash-injection test hook: proves that a worker dying mid-run is recovered from a checkpoint.

Set in the environment of `suite run` (the driver forwards it to the Ray workers):

    SUITE_TEST_CRASH='epoch=1,rank=1[,step=2][,marker=/tmp/crashed]'

Worker `rank` then kills its own process (`os._exit(3)`, as an OOM kill or segfault would, with
no Python cleanup) just before training step `step` (default 0) of epoch `epoch` (0-based). It
first creates the marker file (default: `crash-hook.done` in the Ray run folder), and never
crashes while the marker exists, so the restarted worker group runs on. Never set it in production.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from suite.errors import UsageError

log = logging.getLogger(__name__)

CRASH_ENV = "SUITE_TEST_CRASH"
DEFAULT_MARKER = "crash-hook.done"
CRASH_EXIT_CODE = 3


@dataclass(frozen=True)
class CrashPlan:
    epoch: int
    rank: int
    step: int
    marker: Path

    def should_crash(self, epoch: int, rank: int, step: int) -> bool:
        return (epoch, rank, step) == (self.epoch, self.rank, self.step) and not self.marker.exists()

    def maybe_crash(self, epoch: int, rank: int, step: int) -> None:
        if self.should_crash(epoch, rank, step):
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text(f"crashed rank {rank} at epoch {epoch} step {step}\n")
            log.warning("%s: rank %d crashing on purpose at epoch %d step %d", CRASH_ENV, rank, epoch, step)
            os._exit(CRASH_EXIT_CODE)


def parse_crash_plan(spec: str | None, run_dir: str | os.PathLike) -> CrashPlan | None:
    """The plan in a SUITE_TEST_CRASH value, or None when unset/empty."""
    if not spec:
        return None
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("epoch", "rank", "step", "marker"):
            raise UsageError(f"{CRASH_ENV}={spec!r}: expected 'epoch=E,rank=R[,step=S][,marker=PATH]'")
        fields[key.strip()] = value.strip()
    try:
        epoch, rank, step = (int(fields.get(name, 0)) for name in ("epoch", "rank", "step"))
    except ValueError:
        raise UsageError(f"{CRASH_ENV}={spec!r}: epoch, rank and step must be integers") from None
    if "epoch" not in fields or "rank" not in fields:
        raise UsageError(f"{CRASH_ENV}={spec!r}: epoch and rank are required")
    marker = Path(fields["marker"]) if fields.get("marker") else Path(run_dir) / DEFAULT_MARKER
    return CrashPlan(epoch=epoch, rank=rank, step=step, marker=marker)


def crash_plan_from_env(run_dir: str | os.PathLike) -> CrashPlan | None:
    return parse_crash_plan(os.environ.get(CRASH_ENV), run_dir)
