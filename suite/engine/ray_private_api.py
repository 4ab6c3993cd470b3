"""The only place the suite touches Ray's private API, each use behind one version check.

Ray offers no public way for these three things, each needed by the run engine:

- leaving stop signals to the driver: Ray Train V2's `fit()` installs a SIGINT handler that aborts
  the run and then calls `sys.exit(0)`, skipping the driver's interrupt path (its MLflow run would
  stay RUNNING); `torch_trainer_class` keeps the controller instead, for the driver to abort;
- an embedded Ray without the placement-group cleaner actor, which polls the State API of a
  dashboard an embedded Ray does not start and logs a warning every second;
- binding an embedded Ray to 127.0.0.1 when `ray` was imported before the suite could set
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, and quieting Ray Train's per-report INFO log line.

They are tested on the Ray versions in TESTED_RAY (tests/test_ray_private_api.py checks each name
still exists there); on any other Ray the suite stops with `UntestedRayError` before Ray starts,
rather than failing in the middle of a run.
"""

from __future__ import annotations

import logging
import sys
from functools import cache

from suite.errors import SuiteError

log = logging.getLogger(__name__)

TESTED_RAY = ((2, 60), (2, 61))  # [lowest, highest) major.minor: the Ray the suite's tests ran on
TRAIN_CONTEXT_MODULE = "ray.train.v2._internal.execution.context"  # its `logger` reports every result
RAY_CONSTANTS_MODULE = "ray._private.ray_constants"


class UntestedRayError(SuiteError):
    """The installed Ray is outside the range the suite's use of Ray internals was tested on."""


def _tested_range_text() -> str:
    (low_major, low_minor), (high_major, high_minor) = TESTED_RAY
    return f">={low_major}.{low_minor},<{high_major}.{high_minor}"


def check_ray_version(version: str | None = None) -> str:
    """`version` (default: the installed Ray's) if it is in TESTED_RAY, else UntestedRayError."""
    if version is None:
        import ray

        version = ray.__version__
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    low, high = TESTED_RAY
    if len(major_minor) != 2 or not low <= major_minor < high:
        raise UntestedRayError(
            f"Ray {version} is not a version the suite was tested with (ray{_tested_range_text()}): the run "
            f"engine relies on Ray Train details that change between releases (see {__name__}); install "
            f"'ray[default,train,tune]{_tested_range_text()}'"
        )
    return version


@cache
def _checked() -> None:
    check_ray_version()


def torch_trainer_class(embedded: bool):
    """A TorchTrainer that leaves stop signals to the driver (its controller is kept in
    `.controller` while `fit` runs in the main thread); for an embedded Ray, also one without the
    placement-group cleaner actor (an embedded Ray dies with its driver: nothing to clean)."""
    _checked()
    from ray.train.torch import TorchTrainer

    class SuiteTorchTrainer(TorchTrainer):
        controller = None  # the TrainController actor while `fit` runs in the main thread

        def _register_sigint_handler(self, controller):
            self.controller = controller

    if not embedded:
        return SuiteTorchTrainer
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    class EmbeddedTorchTrainer(SuiteTorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            return [cb for cb in callbacks if not isinstance(cb, PlacementGroupCleanerCallback)]

    return EmbeddedTorchTrainer


def quiet_train_report_log() -> None:
    """Ray Train logs every report's whole metrics dict at INFO on a logger named after its file's
    path (not its module), which RunConfig's LoggingConfig does not reach; the suite's epoch line
    says it once, readably. The module's own `logger` object is the one to quiet."""
    _checked()
    import importlib

    importlib.import_module(TRAIN_CONTEXT_MODULE).logger.setLevel(logging.WARNING)


def bind_loopback_if_imported() -> None:
    """If `ray` was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set (e.g. by another
    module of a test session), set the constant Ray read from it at import."""
    _checked()
    constants = sys.modules.get(RAY_CONSTANTS_MODULE)
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False
