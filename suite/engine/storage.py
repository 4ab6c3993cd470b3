"""Where Ray keeps checkpoints and Tune state: a local folder, a shared path, or an `s3://`/`gs://` URI.

`--storage-path` is handed to Ray's `RunConfig(storage_path=...)` as it is; Ray reads and writes
it through pyarrow's file systems, so a multi-node run needs no NFS: every node and a later
`--resume` find the run there. The default is `$SUITE_HOME/ray_results`. A URI's credentials and
endpoint come from the environment, as for any pyarrow/AWS/GCS client (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 for an S3-compatible server, ...), on every node.

The MLflow run records the storage path (tag `suite.ray_storage_path`), so `--resume` needs only
the run id.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from suite.errors import SuiteError, UsageError

FLAG = "--storage-path"
# pyarrow file systems Ray's storage accepts (pyarrow.fs.FileSystem.from_uri).
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def is_uri(path: str) -> bool:
    return "://" in path


def resolve_storage_path(value: str | None, where: str = FLAG) -> str:
    """An absolute local folder, or a URI of a pyarrow file system; None/empty: the default folder."""
    from suite.tracking import ray_storage_dir

    text = (value or "").strip()
    if not text:
        return str(ray_storage_dir())
    if not is_uri(text):
        return str(Path(text).expanduser().resolve())
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        return str(Path(text[len("file://"):]).expanduser().resolve())
    if scheme not in URI_SCHEMES:
        raise UsageError(
            f"{where} {text!r}: unsupported scheme {scheme!r}; use a local or shared folder, or one of "
            f"{', '.join(s + '://' for s in URI_SCHEMES)}"
        )
    if not text.split("://", 1)[1].strip("/"):
        raise UsageError(f"{where} {text!r}: name the bucket, e.g. {scheme}://BUCKET/PREFIX")
    return text.rstrip("/")


def join(storage_path: str, *names: str) -> str:
    """`storage_path/names...` for a folder or a URI alike."""
    if is_uri(storage_path):
        return posixpath.join(storage_path, *names)
    return str(Path(storage_path, *names))


def _filesystem(path: str, what: str):
    """(pyarrow FileSystem, path inside it); a clear error when the URI's store cannot be reached."""
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(path) if is_uri(path) else (pyarrow.fs.LocalFileSystem(), path)
    except (OSError, ValueError) as err:
        raise SuiteError(f"{what} {path}: cannot open its file system: {err}{_credentials_hint(path)}") from err


def _credentials_hint(path: str) -> str:
    if path.startswith("s3://"):
        return (" (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile, AWS_DEFAULT_REGION, and "
                "AWS_ENDPOINT_URL_S3 for an S3-compatible server)")
    if path.startswith(("gs://", "gcs://")):
        return " (set GOOGLE_APPLICATION_CREDENTIALS)"
    return ""


def check_storage(storage_path: str) -> None:
    """Fail before Ray starts if the storage cannot be written (a missing bucket, no credentials)."""
    import pyarrow.fs

    if not is_uri(storage_path):  # a folder is created by Ray when it starts; nothing is made before
        folder = Path(storage_path)
        if folder.is_file():
            raise UsageError(f"{FLAG} {storage_path}: is a file, expected a folder")
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise SuiteError(f"{FLAG} {storage_path}: not writable ({existing} is not a writable folder)")
        return
    fs, inner = _filesystem(storage_path, FLAG)
    try:
        if fs.get_file_info(inner).type == pyarrow.fs.FileType.File:
            raise UsageError(f"{FLAG} {storage_path}: is a file, expected a folder")
        fs.create_dir(inner, recursive=True)
    except OSError as err:
        raise SuiteError(f"{FLAG} {storage_path}: not writable: {err}{_credentials_hint(storage_path)}") from err


def exists(path: str) -> bool:
    """Whether the folder `path` (local or URI) holds anything."""
    import pyarrow.fs

    fs, inner = _filesystem(path, "storage")
    try:
        return fs.get_file_info(inner).type == pyarrow.fs.FileType.Directory
    except OSError as err:
        raise SuiteError(f"cannot look up {path}: {err}{_credentials_hint(path)}") from err
