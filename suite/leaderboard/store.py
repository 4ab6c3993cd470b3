"""Which MLflow store the leaderboard reads, and failing fast when it cannot be reached.

Resolution and the health probe are suite.tracking's (one definition of the default store for
`suite run` and the leaderboard). On top, MLflow's own HTTP retries are turned off while the
leaderboard talks to a server: MLflow would otherwise retry a dropped connection for minutes.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from suite.errors import TrackingError
from suite.tracking import (
    check_tracking_server,
    default_tracking_uri,
    resolve_tracking_uri,
)

__all__ = [
    "check_reachable",
    "default_tracking_uri",
    "fast_failing_mlflow",
    "redact",
    "resolve_tracking_uri",
    "sqlite_path",
    "store_exists",
]

# While the leaderboard runs: no retries, and a bounded wait per request.
FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def redact(uri: str) -> str:
    """The URI without user:password, for messages and pages that others may read."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI, or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def store_exists(uri: str) -> bool:
    """False only for a local sqlite store whose file was never created (nothing logged yet)."""
    path = sqlite_path(uri)
    return path is None or path.is_file()


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_reachable(uri: str) -> None:
    """TrackingError within seconds when the store cannot be used.

    Servers get suite.tracking's health probe. A sqlite file is checked for the SQLite header
    first: MLflow spends many seconds retrying its migrations on a file that is not a database.
    """
    path = sqlite_path(uri)
    if path is not None and path.is_file():
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise TrackingError(
                f"tracking store {path} is not an SQLite database (no SQLite header); "
                "pass the MLflow store with --tracking-uri sqlite:///PATH/mlflow.db"
            )
    check_tracking_server(uri)


@contextlib.contextmanager
def fast_failing_mlflow() -> Iterator[None]:
    """Turn MLflow's HTTP retries off for the duration, restoring the caller's settings after."""
    saved = {name: os.environ.get(name) for name in FAST_FAIL_ENV}
    os.environ.update(FAST_FAIL_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
