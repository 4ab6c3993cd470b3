"""Talking to a Ray cluster through its Jobs API: addresses, auth tokens, tracking URIs, runtime envs.

Used by `suite submit` and `suite jobs`. Ray is imported inside the functions so that importing
this module (and `python -m suite --help`) stays cheap.

Token authentication (Ray >= 2.52): a cluster started with RAY_AUTH_MODE=token rejects Jobs API
requests without `Authorization: Bearer <token>`. The suite looks for the token where Ray does
(RAY_AUTH_TOKEN, then the file named by RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token), after an
explicit --token-file, and sends it itself, so a client process needs no RAY_AUTH_MODE of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from suite.errors import SuiteError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_DASHBOARD_PORT = 8265
ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"  # the variable `ray job` reads too
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
DEFAULT_TOKEN_PATH = Path("~/.ray/auth_token")
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
RAY_ADDRESS_ENV = "RAY_ADDRESS"

# Never uploaded with the working dir: environments, history, data and run outputs. Anchored
# with "/" so that, e.g., a package folder named `data` deeper in the tree is still shipped.
DEFAULT_EXCLUDES = (
    "/.venv",
    "/venv",
    "/.git",
    "/data",
    "/shared",
    "/mlruns",
    "/mlartifacts",
    "/ray_results",
    "/outputs",
    "/.pytest_cache",
    "/build",
    "/dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    "*.db",  # SQLite tracking stores: local state, and possibly being written while zipped
    "*.sqlite",
    "*.pt",
    "*.pth",
    "*.ckpt",
)

HOW_TO_GET_TOKEN = (
    "pass --token-file FILE, or set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token; "
    "on the head node `ray get-auth-token` prints it, on KubeRay it is the `auth_token` key of the "
    "cluster's Secret (see cluster/README.md)"
)

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


class ClusterError(SuiteError):
    """The Ray cluster cannot be reached or refuses a request."""


class ClusterAuthError(ClusterError):
    """The cluster wants a token the suite does not have, or rejects the one it sent."""


class JobFailedError(ClusterError):
    """A submitted job ended FAILED or STOPPED."""


# -- addresses and tokens ------------------------------------------------------------------------
def dashboard_address(address: str | None) -> str:
    """`http://HOST:PORT` of the Jobs API: --address, else $RAY_API_SERVER_ADDRESS, else an http(s)
    $RAY_ADDRESS (the order `ray job` uses; a GCS address HOST:6379 is not the Jobs API)."""
    ray_address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    for value, source in (
        (address, "--address"),
        (os.environ.get(ADDRESS_ENV), f"${ADDRESS_ENV}"),
        (ray_address if ray_address.startswith(("http://", "https://")) else "", f"${RAY_ADDRESS_ENV}"),
    ):
        if (value or "").strip():
            address = value.strip()
            logger.info("Ray Jobs API: %s (from %s)", address, source)
            break
    else:
        address = ""
    if not address:
        raise UsageError(
            f"--address is required: the Ray dashboard of the cluster, e.g. http://HEAD:{DEFAULT_DASHBOARD_PORT} "
            f"(or set ${ADDRESS_ENV})"
        )
    if address.startswith("ray://"):
        raise UsageError(
            f"--address {address}: that is a Ray Client address; the suite submits through the Jobs API, "
            f"i.e. the dashboard's HTTP address, e.g. http://HEAD:{DEFAULT_DASHBOARD_PORT}"
        )
    if "://" not in address:
        address = "http://" + address
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"--address {address}: expected http://HOST:PORT of the Ray dashboard")
    if parsed.port is None:
        address = f"{parsed.scheme}://{parsed.hostname}:{DEFAULT_DASHBOARD_PORT}{parsed.path}"
    return address.rstrip("/")


@dataclass(frozen=True)
class AuthToken:
    value: str
    source: str  # where it was read, for messages (never the token itself)


def read_auth_token(token_file: str | os.PathLike | None = None) -> AuthToken | None:
    """The cluster token from --token-file, $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if token_file:
        return AuthToken(_read_token_file(Path(token_file), "--token-file"), f"--token-file {token_file}")
    if os.environ.get(TOKEN_ENV, "").strip():
        return AuthToken(os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if os.environ.get(TOKEN_PATH_ENV):
        path = Path(os.environ[TOKEN_PATH_ENV])
        return AuthToken(_read_token_file(path, f"${TOKEN_PATH_ENV}"), f"${TOKEN_PATH_ENV} ({path})")
    default = DEFAULT_TOKEN_PATH.expanduser()
    if default.is_file():
        return AuthToken(_read_token_file(default, "the default token file"), str(default))
    return None


def _read_token_file(path: Path, what: str) -> str:
    # Ray itself aborts on an unreadable RAY_AUTH_TOKEN_PATH instead of falling back; so do we.
    try:
        token = path.expanduser().read_text().strip()
    except OSError as err:
        raise ClusterAuthError(f"{what}: cannot read the Ray auth token from {path}: {err.strerror}") from err
    if not token:
        raise ClusterAuthError(f"{what}: the Ray auth token file {path} is empty; {HOW_TO_GET_TOKEN}")
    return token


def job_client(address: str | None, token_file: str | os.PathLike | None = None):
    """A connected `JobSubmissionClient`; unreachable clusters and auth failures become clear errors."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = dashboard_address(address)
    token = read_auth_token(token_file)
    if token is None and os.environ.get(AUTH_MODE_ENV, "").lower() == "token":
        raise ClusterAuthError(f"{AUTH_MODE_ENV}=token is set but no Ray auth token was found: {HOW_TO_GET_TOKEN}")
    headers = {"Authorization": f"Bearer {token.value}"} if token else None
    try:
        return JobSubmissionClient(url, headers=headers)
    except AuthenticationError as err:
        raise _auth_error(url, token, err) from err
    except ConnectionError as err:
        raise ClusterError(
            f"cannot reach the Ray Jobs API at {url}: is the cluster up, and is that the dashboard's "
            f"address (port {DEFAULT_DASHBOARD_PORT} by default, not the GCS port 6379)? A dashboard "
            "bound to 127.0.0.1 on the head is reached through a tunnel: `ray dashboard cluster.yaml` "
            "or `kubectl port-forward svc/HEAD-SVC 8265` (cluster/README.md)"
        ) from err


def _auth_error(url: str, token: AuthToken | None, err: Exception) -> ClusterAuthError:
    if token is None:
        return ClusterAuthError(f"the Ray cluster at {url} requires an auth token and none was found: {HOW_TO_GET_TOKEN}")
    return ClusterAuthError(
        f"the Ray cluster at {url} rejected the auth token from {token.source}: it is not this cluster's "
        f"token; {HOW_TO_GET_TOKEN}"
    )


def call(client, what: str, fn, *args, **kwargs):
    """Run one Jobs API call, turning Ray's errors into the suite's."""
    from ray.exceptions import AuthenticationError

    try:
        return fn(*args, **kwargs)
    except AuthenticationError as err:
        raise ClusterAuthError(f"{what}: the cluster rejected the request: {err}") from err
    except RuntimeError as err:  # the SDK reports HTTP failures (e.g. unknown job id) as RuntimeError
        raise ClusterError(f"{what}: {err}") from err


# -- tracking URI and runtime env ----------------------------------------------------------------
def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_cluster_tracking_uri(tracking_uri: str | None, address: str) -> str:
    """The MLflow URI a job will log to (--tracking-uri, else $MLFLOW_TRACKING_URI); only a server
    that every node reaches is accepted."""
    uri, source = (tracking_uri or "").strip(), "--tracking-uri"
    if not uri:
        uri, source = os.environ.get(TRACKING_URI_ENV, "").strip(), f"${TRACKING_URI_ENV}"
    run_server = "start one as in cluster/README.md (cluster/mlflow/) and pass --tracking-uri http://MLFLOW-HOST:5000"
    if not uri:
        raise UsageError(
            f"--tracking-uri is required on a cluster (or ${TRACKING_URI_ENV}): without it every node would log "
            f"to its own local SQLite store and the runs would be scattered or lost; {run_server}"
        )
    logger.info("MLflow tracking server of the job: %s (from %s)", uri, source)
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file", "sqlite") or len(parsed.scheme) == 1:  # len 1: a Windows drive
        raise UsageError(
            f"--tracking-uri {uri}: a local {'SQLite database' if parsed.scheme == 'sqlite' else 'folder'} "
            "cannot be the tracking store of a cluster: each node would write its own copy on its own "
            f"disk (and SQLite does not support concurrent writers over network file systems); {run_server}"
        )
    if parsed.scheme not in ("http", "https", "databricks"):
        raise UsageError(
            f"--tracking-uri {uri}: scheme {parsed.scheme!r} is not an MLflow tracking server; use "
            f"http(s)://HOST:PORT; {run_server}"
        )
    cluster_host = urlparse(address).hostname
    if _is_loopback(parsed.hostname) and not _is_loopback(cluster_host):
        raise UsageError(
            f"--tracking-uri {uri} points at this machine's loopback, which the nodes of the cluster at "
            f"{address} cannot reach; pass an address of the MLflow server that the nodes can reach"
        )
    return uri


def find_project_root() -> Path | None:
    """The source checkout the suite runs from, or None when it runs from an installed copy.

    Only the folder holding the `suite` package counts: a wheel installed into a venv that happens
    to sit inside a checkout must not pass that checkout off as the code that runs."""
    folder = Path(__file__).resolve().parents[1]
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and 'name = "spikformer-suite"' in pyproject.read_text():
        return folder
    return None


def parse_env_vars(items: list[str] | None) -> dict[str, str]:
    env = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        env[name.strip()] = value
    return env


def build_runtime_env(
    *,
    tracking_uri: str,
    working_dir: Path | None,
    env_vars: dict[str, str] | None = None,
    excludes: list[str] | None = None,
) -> dict:
    """The job's runtime_env: the project folder (if any), the tracking URI and extra env vars.

    The auth token is deliberately not put in `env_vars`: those are shown by the dashboard, and
    the nodes of an authenticated cluster already hold the token.
    """
    env = {TRACKING_URI_ENV: tracking_uri, "PYTHONUNBUFFERED": "1", **(env_vars or {})}
    leaked = sorted(name for name in env if name in (TOKEN_ENV, TOKEN_PATH_ENV))
    if leaked:
        raise UsageError(
            f"--env {', '.join(leaked)}: the Ray auth token is not passed to jobs (runtime env vars are "
            "visible in the dashboard); the cluster's nodes already have it"
        )
    runtime_env: dict = {"env_vars": env}
    if working_dir is not None:
        if not working_dir.is_dir():
            raise UsageError(f"--working-dir {working_dir}: not a folder")
        runtime_env["working_dir"] = str(working_dir)
        runtime_env["excludes"] = [*DEFAULT_EXCLUDES, *(excludes or ())]
    return runtime_env


# -- following a job -----------------------------------------------------------------------------
def follow_logs(client, job_id: str, out: TextIO = sys.stdout) -> None:
    """Stream the job's logs to `out` until the job ends (the server closes the stream)."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except RuntimeError as err:
        # The stream can drop (dashboard restart, proxy timeout); the job itself goes on.
        logger.warning("log stream of job %s ended early (%s); waiting for the job to end", job_id, err)


def wait_for_end(client, job_id: str, poll_s: float = 1.0, timeout_s: float | None = None):
    """The job's final `JobInfo`, polling its status."""
    start = time.monotonic()
    while True:
        info = call(client, f"job {job_id}", client.get_job_info, job_id)
        if str(info.status) in TERMINAL_STATES:
            return info
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise ClusterError(f"job {job_id} is still {info.status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def raise_for_job(client, job_id: str, info) -> None:
    """JobFailedError naming the job's error when it did not succeed."""
    status = str(info.status)
    if status == "SUCCEEDED":
        return
    lines = [line.strip() for line in (info.message or "").splitlines() if line.strip()]
    summary = lines[0] if lines else ""
    if "runtime_env" in summary or "runtime environment" in summary:
        summary = " ".join(lines)[:2000]  # the reason follows on the next lines; there are no job logs
    error_line = _last_error_line(client, job_id)
    details = "; ".join(part for part in (summary, error_line and f"last error: {error_line}") if part)
    code = f", exit code {info.driver_exit_code}" if getattr(info, "driver_exit_code", None) is not None else ""
    raise JobFailedError(f"job {job_id} {status}{code}: {details or 'no message'}")


def _last_error_line(client, job_id: str) -> str:
    try:
        logs = client.get_job_logs(job_id)
    except Exception:  # the logs are a courtesy; the status already says it failed
        return ""
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "exception" in line.lower():
            return line
    return lines[-1] if lines else ""
