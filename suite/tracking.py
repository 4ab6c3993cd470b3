"""MLflow tracking for the suite: where runs are stored, how they are created, tagged and found.

Work folder
    Everything the suite writes by default lives under one folder, ``$SUITE_HOME``, default
    ``~/.cache/spikformer-suite`` (the same tree that holds the default data root ``data/``):

    - ``mlflow.db``      the MLflow tracking store (SQLite, MLflow 3's default backend),
    - ``artifacts/``     MLflow artifacts of runs in that store,
    - ``ray_results/``   Ray Train run folders (per-epoch checkpoints that `--resume` restarts from).

    Browse the runs with ``mlflow ui --backend-store-uri sqlite:///$SUITE_HOME/mlflow.db``
    (``ui_command()`` prints the exact line for the store in use, and the link to an experiment's
    runs table).

Tracking URIs
    ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI`` (MLflow's convention), else the embedded store
    above; where the URI came from is logged and recorded in the run's params.
    ``sqlite:///ABS/PATH.db`` (artifacts go to ``artifacts/`` beside the .db file), an MLflow server
    ``http(s)://host:port`` (probed before anything starts, so an unreachable server fails in
    seconds, not after MLflow's HTTP retries), or another SQLAlchemy database URI. MLflow 3's
    file store (``file://`` or a bare folder such as ``./mlruns``) is refused.

The helpers are small on purpose: `suite run`, `suite tune` and the leaderboard share them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from suite.errors import TrackingError, UsageError

log = logging.getLogger(__name__)

SUITE_HOME_ENV = "SUITE_HOME"
DEFAULT_SUITE_HOME = Path("~/.cache/spikformer-suite")
DB_FILENAME = "mlflow.db"
ARTIFACTS_DIRNAME = "artifacts"
RAY_RESULTS_DIRNAME = "ray_results"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable: every MLflow tool reads it
SOURCE_DEFAULT = "default"

# The suite trains models, and says so in MLflow's own terms. The experiment tag is what MLflow 3's
# UI read to open an experiment on its runs table rather than the GenAI traces overview. MLflow
# 3.17's UI (checked on 3.17.2) ignores it: a browser-wide "GenAI / Model training" switch decides,
# GenAI by default, and the page's query parameter below sets it; so every link the suite prints
# carries it (`experiment_url`). tests/test_leaderboard_browser.py opens such a link in Chromium.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
TRAINING_VIEW_QUERY = "workflowType=machine_learning"
MLFLOW_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default

# Engine-internal tags (not read by the leaderboard, hence not in suite.schema).
TAG_RAY_RUN_NAME = "suite.ray_run_name"
TAG_RAY_STORAGE = "suite.ray_storage_path"
TAG_ERROR = "suite.error"

PROBE_TIMEOUT_S = 3.0
SQLALCHEMY_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
HTTP_SCHEMES = ("http", "https")
OTHER_SCHEMES = ("databricks", "databricks-uc")


def work_dir() -> Path:
    """``$SUITE_HOME`` or ``~/.cache/spikformer-suite`` (absolute; created on first use)."""
    path = Path(os.environ.get(SUITE_HOME_ENV) or DEFAULT_SUITE_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_tracking_uri() -> str:
    """The embedded store: ``sqlite:///<work_dir>/mlflow.db``."""
    return sqlite_uri(work_dir() / DB_FILENAME)


def sqlite_uri(path: str | os.PathLike) -> str:
    return "sqlite:///" + str(Path(path).expanduser().resolve())


def ray_storage_dir() -> Path:
    """Where Ray Train keeps run folders and checkpoints: ``<work_dir>/ray_results``."""
    return work_dir() / RAY_RESULTS_DIRNAME


@dataclass(frozen=True)
class Resolved:
    """A setting the suite found for itself, and where: a flag, an environment variable, or the default."""

    value: str | None
    source: str  # "--tracking-uri", "$MLFLOW_TRACKING_URI", "default", ...

    def __str__(self) -> str:
        return f"{self.value} (from {self.source})"


def resolve_tracking(uri: str | None, flag: str = "--tracking-uri") -> Resolved:
    """MLflow's convention: `--tracking-uri`, else $MLFLOW_TRACKING_URI, else the embedded store.

    The value is validated and made absolute; an error names where the bad value came from.
    """
    if uri:
        return Resolved(check_tracking_uri(uri, flag), flag)
    from_env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if from_env:
        return Resolved(check_tracking_uri(from_env, f"${TRACKING_URI_ENV}"), f"${TRACKING_URI_ENV}")
    return Resolved(default_tracking_uri(), SOURCE_DEFAULT)


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI of `resolve_tracking` (flag, else $MLFLOW_TRACKING_URI, else the embedded store)."""
    return resolve_tracking(uri).value


def check_tracking_uri(uri: str, where: str = "--tracking-uri") -> str:
    """`uri` validated and made absolute; `where` (a flag or $VARIABLE) names it in errors."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("", "file"):
        raise UsageError(
            f"{where} {uri!r}: MLflow 3's file store is not supported; use "
            f"sqlite:///PATH/mlflow.db, an MLflow server http://HOST:PORT, or leave {where} unset for "
            f"the local store {default_tracking_uri()}"
        )
    if scheme == "sqlite":
        db_path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not db_path or db_path == ":memory:":
            raise UsageError(f"{where} {uri!r}: expected sqlite:///PATH/TO/mlflow.db")
        return sqlite_uri(db_path)
    if scheme in HTTP_SCHEMES or scheme in OTHER_SCHEMES or scheme.split("+")[0] in SQLALCHEMY_SCHEMES:
        return uri.rstrip("/")
    raise UsageError(
        f"{where} {uri!r}: unsupported scheme {scheme!r}; use sqlite:///PATH.db or http(s)://HOST:PORT"
    )


def artifact_root_for(tracking_uri: str) -> str | None:
    """Artifact folder for a SQLite store (beside the .db file); None lets a server decide.

    MLflow would otherwise put a SQLite store's artifacts in ./mlruns of whatever folder the
    process happens to run in (Ray workers even chdir), scattering them.
    """
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri[len("sqlite:///"):]).parent / ARTIFACTS_DIRNAME)
    return None


def check_tracking_server(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast (TrackingError) if the tracking store cannot be used; call before starting Ray.

    Servers get one GET on ``/health`` with a short timeout; a SQLite store needs a writable folder.
    """
    scheme = urlparse(uri).scheme.lower()
    if scheme == "sqlite":
        folder = Path(uri[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"tracking store {uri}: cannot create folder {folder}: {err}") from err
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking store {uri}: folder {folder} is not writable")
        return
    if scheme not in HTTP_SCHEMES:
        return  # database and Databricks URIs fail clearly on first use; nothing cheap to probe
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        hint = " (set MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN)" if err.code in (401, 403) else ""
        raise TrackingError(f"MLflow tracking server {uri} refused the health check: HTTP {err.code}{hint}") from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it (e.g. `mlflow server "
            f"--host 127.0.0.1 --port 5000`) or omit --tracking-uri to use the local store "
            f"{default_tracking_uri()}"
        ) from err
    if status != 200:
        raise TrackingError(f"MLflow tracking server {uri} answered /health with HTTP {status}")


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The runs table of an experiment in MLflow's UI (the training view, see TRAINING_VIEW_QUERY)."""
    base = tracking_uri if urlparse(tracking_uri).scheme in HTTP_SCHEMES else MLFLOW_UI_URL
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW_QUERY}"


def ui_command(tracking_uri: str, experiment_id: str | None = None) -> str:
    """What a person does to browse the runs of this store (and of `experiment_id`, if given)."""
    if urlparse(tracking_uri).scheme in HTTP_SCHEMES:
        return f"open {experiment_url(tracking_uri, experiment_id) if experiment_id else tracking_uri} in a browser"
    page = f", then open {experiment_url(tracking_uri, experiment_id)}" if experiment_id else ""
    return f"mlflow ui --backend-store-uri {tracking_uri}{page}"


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def get_or_create_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment `name`, created (with artifacts beside a SQLite store) if absent.

    Either way it is tagged a model-training experiment (`TAG_EXPERIMENT_KIND`), unless someone
    already gave it a kind, so that `mlflow ui` opens it on its runs table.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {name!r} in {tracking_uri} is deleted; restore it "
                f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) or pick another --experiment"
            )
        if TAG_EXPERIMENT_KIND not in found.tags:  # made by an older suite, or by hand
            mlflow_client.set_experiment_tag(found.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)
        return found.experiment_id
    root = artifact_root_for(tracking_uri)
    location = str(Path(root) / name.replace("/", "_")) if root else None
    try:
        return mlflow_client.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING}
        )
    except MlflowException:
        # Another process (a parallel trial) created it first.
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def create_run(
    tracking_uri: str,
    experiment: str,
    *,
    run_name: str,
    tags: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
) -> str:
    """Create one MLflow run (status RUNNING) with its tags and params; returns its id."""
    mlflow_client = client(tracking_uri)
    experiment_id = get_or_create_experiment(tracking_uri, experiment)
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    if params:
        log_params(tracking_uri, run.info.run_id, params)
    return run.info.run_id


def log_params(tracking_uri: str, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(key, "None" if value is None else str(value)) for key, value in sorted(params.items())]
    mlflow_client = client(tracking_uri)
    for start in range(0, len(items), 100):  # MLflow's log_batch takes at most 100 params
        mlflow_client.log_batch(run_id, params=items[start : start + 100])


def get_run(tracking_uri: str, run_id: str):
    """The MLflow run `run_id`, or a clear error naming the store it was looked up in."""
    from mlflow.exceptions import MlflowException

    try:
        return client(tracking_uri).get_run(run_id)
    except MlflowException as err:
        raise UsageError(f"--resume {run_id}: no such MLflow run in {tracking_uri} ({err.message})") from err


def mark_failed(tracking_uri: str, run_id: str, error: BaseException | str, traceback_text: str = "") -> None:
    """End the run FAILED with the error as a tag (one line) and the traceback as `error.txt`."""
    mlflow_client = client(tracking_uri)
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    try:
        mlflow_client.set_tag(run_id, TAG_ERROR, first_line[:5000])
        mlflow_client.log_text(run_id, traceback_text or str(error), "error.txt")
    finally:
        mlflow_client.set_terminated(run_id, "FAILED")


def mark_status(tracking_uri: str, run_id: str, status: str) -> None:
    """Set a run's terminal status (FINISHED, KILLED) unless it already has it."""
    mlflow_client = client(tracking_uri)
    if mlflow_client.get_run(run_id).info.status != status:
        mlflow_client.set_terminated(run_id, status)


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """Put a FAILED/KILLED run back to RUNNING (for `--resume`)."""
    client(tracking_uri).update_run(run_id, status="RUNNING")


def config_hash(config: Mapping[str, Any], exclude: tuple[str, ...] = ("seed",)) -> str:
    """A short stable hash of a config; runs differing only in excluded keys share it."""
    kept = {key: value for key, value in sorted(config.items()) if key not in exclude}
    blob = json.dumps(kept, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def data_fingerprint(folder: str | os.PathLike, max_entries: int = 10_000) -> str:
    """`real:<hash>` of a data folder's path and of the names and sizes in its top two levels.

    Cheap on purpose (ImageNet has 1.3M files): it identifies which copy of a dataset a run used
    and changes when files are added, removed or resized near the top of the tree.
    """
    root = Path(folder).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode())
    entries = 0
    for level_one in sorted(root.iterdir()) if root.is_dir() else ():
        for entry in [level_one, *(sorted(level_one.iterdir()) if level_one.is_dir() else ())]:
            size = entry.stat().st_size if entry.is_file() else -1
            digest.update(f"{entry.relative_to(root)}:{size};".encode())
            entries += 1
            if entries >= max_entries:
                break
    return "real:" + digest.hexdigest()[:16]


@cache
def git_commit() -> str:
    """The suite checkout's commit (with "-dirty" if it has local changes), or "unknown" (an
    installed copy, whose version the run records anyway)."""
    from suite.ray_jobs_client import find_project_root

    repo = find_project_root()
    if repo is None:
        return "unknown"
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def attach_run(tracking_uri: str, run_id: str, *, system_metrics: bool = True):
    """Make `run_id` the active fluent run in this process (a worker logging into the driver's run).

    The run is reopened as RUNNING if a previous attempt ended it; call `mlflow.end_run(status)`
    when done. System metrics (CPU, memory, GPU via psutil/pynvml) are sampled in a thread.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
