"""Stop signals of a `suite run` / `suite tune` driver: SIGTERM stops a run the way Ctrl-C does.

`kill PID` and `suite jobs stop` (Ray's Jobs API sends SIGTERM to the job's entrypoint, then
SIGKILL RAY_JOB_STOP_WAIT_TIME_S later, 3 s by default) must not leave an MLflow run RUNNING.
Left to Ray, neither signal gets there: `ray.init` installs a SIGTERM handler that calls
`sys.exit`, and Ray Train V2's Ctrl-C handler aborts the run and then calls `sys.exit(0)`;
both skip the driver's interrupt handling (the process exits 1, or dies on SIGABRT, and the run
stays RUNNING or is left FAILED by a worker torn down mid-epoch).

`stop_signals_interrupt` turns SIGINT and SIGTERM into `RunInterrupted` (a KeyboardInterrupt)
in the main thread, so both take the driver's one interrupt path. `sigterm_like_sigint` is for
Ray Tune, whose own Ctrl-C handler already stops a sweep gracefully: SIGTERM is handed to it.

Exit status: 128 + the signal number, the shell's convention and the CLI's for Ctrl-C (130), so
SIGTERM gives 143 and a caller can tell a stopped run from a failed one (1, 2).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class RunInterrupted(KeyboardInterrupt):
    """A stop signal arrived while a run was on; the driver adds its MLflow run and final status."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.run_id: str | None = None
        self.run_status: str | None = None
        self.tracking_uri: str | None = None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _handlers(handler, signals: tuple[int, ...]) -> Iterator[None]:
    """`handler` for `signals` inside the block (main thread only), the previous ones restored after."""
    if not in_main_thread():  # Python delivers signals to the main thread only, and only it may set handlers
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, old in previous.items():
            # None: a handler not set from Python; the default is the closest Python can restore.
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


class Received:
    """The first stop signal a block caught, if any.

    Needed besides the exception: `ray.get` turns any KeyboardInterrupt raised while it waits into
    a new, plain one, so the `RunInterrupted` may arrive as that; `interrupt(err)` restores it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def interrupt(self, err: BaseException) -> RunInterrupted:
        if isinstance(err, RunInterrupted):
            return err
        return RunInterrupted(self.signum if self.signum is not None else signal.SIGINT)


@contextmanager
def stop_signals_interrupt(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[Received]:
    """Inside the block the first of `signals` raises `RunInterrupted`; repeats only log.

    Repeats are not raised again so that the clean-up the first one started (MLflow status, Ray
    shutdown, both with time limits) is not cut short; SIGKILL still stops the process at once.
    """
    received = Received()

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if received.signum is not None:
            log.warning("%s: already stopping (send SIGKILL to stop without clean-up)", name)
            return
        received.signum = signum
        log.warning("%s received: stopping the run (MLflow status KILLED, checkpoints kept)", name)
        raise RunInterrupted(signum)

    with _handlers(handler, signals):
        yield received


@contextmanager
def sigterm_like_sigint() -> Iterator[Received]:
    """SIGTERM calls the SIGINT handler of the moment (Ray Tune's graceful stop inside `Tuner.fit`).

    Where there is none, or only Python's default one, it raises `RunInterrupted` instead, so a
    SIGTERM before Tune's loop starts still stops the process through the interrupt path.
    """
    received = Received()

    def handler(signum, frame):
        on_sigint = signal.getsignal(signal.SIGINT)
        received.signum = signum
        if callable(on_sigint) and on_sigint is not signal.default_int_handler:
            log.warning("SIGTERM received: stopping as on Ctrl-C")
            on_sigint(signal.SIGINT, frame)
            return
        log.warning("SIGTERM received: stopping")
        raise RunInterrupted(signum)

    with _handlers(handler, (signal.SIGTERM,)):
        yield received
