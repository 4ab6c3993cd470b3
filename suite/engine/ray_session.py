"""Starting an embedded local Ray, or joining a cluster, for `suite run` / `suite tune`.

Embedded (no `--address`): a private Ray on this machine bound to 127.0.0.1 only, no dashboard,
one logical CPU per core, worker output forwarded to this terminal. Ray binds its ports to the
machine's outward address unless told it is a single-machine cluster, which is what
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 does (Ray reads it when `ray` is first imported).

Which: `--address`, else $RAY_ADDRESS (Ray's convention; Ray sets it for a job's driver), else
the embedded Ray; `resolve_ray_address` says which and where it came from.

Cluster (`--address HOST:PORT` or `ray://...`): Ray 2.60 clusters use token authentication by
default; export RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file
~/.ray/auth_token) before `suite run` — Ray reads both from the environment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from suite.engine.ray_private_api import bind_loopback_if_imported, check_ray_version
from suite.errors import SuiteError, UsageError
from suite.tracking import SOURCE_DEFAULT, Resolved

log = logging.getLogger(__name__)

TRAIN_V2_ENV = "RAY_TRAIN_V2_ENABLED"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
RAY_ADDRESS_ENV = "RAY_ADDRESS"
LOCAL_ADDRESS = "local"  # Ray's word for "start a Ray here": the embedded one
EMBEDDED = "embedded local Ray"


@dataclass(frozen=True)
class RaySession:
    address: str  # the GCS address, for the run's tags
    embedded: bool
    started_here: bool  # whether `close()` should shut it down

    def close(self) -> None:
        if self.started_here:
            import ray

            ray.shutdown()


def enable_train_v2() -> None:
    """Ray Train V2 must be chosen before `ray.train` is imported (the driver and every worker)."""
    os.environ[TRAIN_V2_ENV] = "1"


def resolve_ray_address(address: str | None, flag: str = "--address") -> Resolved:
    """Ray's convention: `--address`, else $RAY_ADDRESS, else an embedded Ray (value None)."""
    for value, source in ((address, flag), (os.environ.get(RAY_ADDRESS_ENV), f"${RAY_ADDRESS_ENV}")):
        value = (value or "").strip()
        if value:
            return Resolved(None if value == LOCAL_ADDRESS else value, source)
    return Resolved(None, SOURCE_DEFAULT)


def describe_address(resolved: Resolved) -> str:
    return f"{resolved.value or EMBEDDED} (from {resolved.source})"


def machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def start_ray(address: str | None) -> RaySession:
    """Join `address`, or start an embedded loopback-only Ray; reuse one already initialised."""
    check_ray_version()  # before anything starts: the engine relies on details of the tested Ray
    enable_train_v2()
    if address is None:
        _bind_loopback()
    import ray

    if ray.is_initialized():
        gcs = ray.get_runtime_context().gcs_address
        log.info("using the Ray instance already running in this process (%s)", gcs)
        return RaySession(address=gcs, embedded=address is None, started_here=False)
    try:
        if address is None:
            ray.init(
                address="local", num_cpus=machine_cpus(), include_dashboard=False, log_to_driver=True,
                logging_level=logging.WARNING,
            )
        else:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "an embedded Ray"
        hint = (
            "; check the address, and for token auth export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"
            if address else ""
        )
        raise SuiteError(f"cannot start {where}: {type(err).__name__}: {err}{hint}") from err
    return RaySession(address=ray.get_runtime_context().gcs_address, embedded=address is None, started_here=True)


def _bind_loopback() -> None:
    os.environ[LOOPBACK_ENV] = "0"
    bind_loopback_if_imported()  # `ray` imported before us (e.g. by another test module) read it already


def check_resources(workers: int, cpus_per_worker: int, gpus_per_worker: float, embedded: bool) -> None:
    """Refuse a worker group that can never be scheduled (Ray would wait for it forever)."""
    import ray

    available = ray.cluster_resources()
    cpus, gpus = available.get("CPU", 0.0), available.get("GPU", 0.0)
    problems = []
    if workers * cpus_per_worker > cpus:
        problems.append(
            f"--workers {workers} x --cpus-per-worker {cpus_per_worker} needs {workers * cpus_per_worker} CPUs, "
            f"Ray has {cpus:g}"
        )
    if gpus_per_worker > 0 and workers * gpus_per_worker > gpus:
        problems.append(
            f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g} needs {workers * gpus_per_worker:g} GPUs, "
            f"Ray has {gpus:g}"
        )
    if not problems:
        return
    message = "; ".join(problems)
    if embedded:
        raise UsageError(f"{message}: lower --workers/--cpus-per-worker/--gpus-per-worker or join a cluster with --address")
    log.warning("%s: waiting for the cluster to scale up", message)


def auto_cpus_per_worker(workers: int, embedded: bool) -> int:
    """Embedded: share the machine's CPUs evenly; on a cluster: 1 unless --cpus-per-worker says more."""
    if not embedded:
        return 1
    return max(1, machine_cpus() // workers)
