"""The one module that touches Ray's private API: its version range, and each private name it uses
still there in the installed Ray (an upgrade that moves one fails here, not in the middle of a run)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import ray

from suite.engine import ray_private_api as private
from suite.engine.ray_private_api import TESTED_RAY, UntestedRayError, check_ray_version

SUITE = Path(__file__).resolve().parents[1] / "suite"


def test_installed_ray_is_in_the_tested_range_and_others_are_refused():
    assert check_ray_version() == ray.__version__
    (low_major, low_minor), (high_major, high_minor) = TESTED_RAY
    assert check_ray_version(f"{low_major}.{low_minor}.0") and check_ray_version(f"{low_major}.{low_minor}.9")
    for untested in (f"{low_major}.{low_minor - 1}.3", f"{high_major}.{high_minor}.0", "3.0.0", "nightly"):
        with pytest.raises(UntestedRayError) as err:
            check_ray_version(untested)
        assert f"Ray {untested} is not a version the suite was tested with" in str(err.value)
        assert f"ray[default,train,tune]>={low_major}.{low_minor},<{high_major}.{high_minor}" in str(err.value)


def test_the_package_pins_ray_to_the_tested_range():
    pyproject = (SUITE.parent / "pyproject.toml").read_text()
    (low_major, low_minor), (high_major, high_minor) = TESTED_RAY
    assert f'"ray[default,train,tune]>={low_major}.{low_minor},<{high_major}.{high_minor}"' in pyproject


def test_every_private_name_used_exists_in_the_installed_ray():
    import importlib
    import logging

    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    for method in ("_register_sigint_handler", "_create_default_callbacks"):
        assert callable(getattr(TorchTrainer, method)), method
    assert PlacementGroupCleanerCallback in {type(cb) for cb in _default_callbacks(TorchTrainer)}
    context_logger = importlib.import_module(private.TRAIN_CONTEXT_MODULE).logger
    context_logger.setLevel(logging.INFO)  # as in a worker whose root logger is at INFO
    private.quiet_train_report_log()
    assert not context_logger.isEnabledFor(logging.INFO)  # the per-report line is not emitted
    assert context_logger.isEnabledFor(logging.WARNING)
    assert hasattr(importlib.import_module(private.RAY_CONSTANTS_MODULE), "ENABLE_RAY_CLUSTER")

    embedded = private.torch_trainer_class(embedded=True)
    assert not any(isinstance(cb, PlacementGroupCleanerCallback) for cb in _default_callbacks(embedded))
    for trainer_class in (embedded, private.torch_trainer_class(embedded=False)):
        before = signal.getsignal(signal.SIGINT)
        trainer = trainer_class(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1))
        trainer._register_sigint_handler("the controller")  # what fit() calls in the main thread
        assert trainer.controller == "the controller" and signal.getsignal(signal.SIGINT) is before


def _default_callbacks(trainer_class) -> list:
    trainer = trainer_class(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1))
    return trainer._create_default_callbacks()


def test_no_private_ray_api_outside_this_module():
    found = subprocess.run(
        ["grep", "-rn", r"_internal\|\._[a-z_]*handler\|_create_default_callbacks\|ray\._private", str(SUITE)],
        capture_output=True, text=True, check=False,
    ).stdout.splitlines()
    outside = [line for line in found if not line.startswith(str(SUITE / "engine" / "ray_private_api.py"))]
    assert outside == []
    assert found  # the grep itself works: it finds the module's own uses
