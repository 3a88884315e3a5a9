"""The one storage door: every byte misomap reads or writes goes through a `Target` (a root URL -
local path, file:// or s3:// - plus the run's storage section), and every failure is one
`StorageError` naming the URL with credentials redacted.

Finished files are published atomically: local targets get a temporary name in the same folder,
then an atomic rename; object-store targets are written by one PUT, which S3 makes visible only
once complete. Local staging folders carry their process id, so those left by a killed run are
removed by the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from misomap.core.config_base import StorageConfig, is_remote
from misomap.core.errors import MissingObjectError, StorageError, StorageWriteError, redact

if TYPE_CHECKING:
    import zarr

log = logging.getLogger(__name__)




@dataclass(frozen=True)
class Target:
    """A file or folder on local disk or an object store: its URL and the storage section whose
    options (endpoint, region, retries; credentials from the environment) reach it. Frozen and
    hashable, so it travels to dask workers and keys caches."""

    url: str
    storage: StorageConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", self.url.rstrip("/") or self.url)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s@]*@", self.url):  # never reaches a client, log or store
            raise StorageError(f"{redact(self.url)}: a URL with credentials (user:password@) is refused: put them in "
                               "the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and give the URL without")

    @property
    def remote(self) -> bool:
        """True on an object store."""
        return is_remote(self.url)

    @property
    def options(self) -> dict[str, Any]:
        """fsspec/zarr storage options: the storage section's for remote URLs, none for local paths."""
        return self.storage.options_for(self.url) if self.storage is not None else {}

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem (fsspec keeps one instance per scheme and options)."""
        return self.filesystem()

    def filesystem(self, fresh: bool = False) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem; `fresh` bypasses fsspec's instance cache (re-reads credentials)."""
        options: dict[str, Any] = dict(self.options) if self.remote else {"auto_mkdir": True}
        if fresh:
            options["skip_instance_cache"] = True
        fs, _ = fsspec.core.url_to_fs(self.url, **options)
        return fs

    @property
    def path(self) -> str:
        """The URL as the filesystem names it (no scheme)."""
        if self.remote:
            return self.url.split("://", 1)[1]
        return os.path.abspath(os.path.expanduser(self.url.removeprefix("file://")))

    def join(self, *parts: str) -> Target:
        """A file or folder below this one."""
        return Target("/".join([self.url, *(p.strip("/") for p in parts)]), self.storage)

    def _fail(self, action: str, err: BaseException) -> StorageError:
        reason = (err.strerror if isinstance(err, OSError) and err.strerror else str(err)) or type(err).__name__
        return StorageError(f"cannot {action} {redact(self.url)}: {redact(reason)}")

    def read_bytes(self) -> bytes:
        """The whole object; MissingObjectError when it does not exist."""
        try:
            return self.fs.cat_file(self.path)
        except FileNotFoundError:
            raise MissingObjectError(f"file not found: {redact(self.url)}") from None
        except (OSError, PermissionError) as err:
            raise self._fail("read", err) from None

    def write_bytes(self, data: bytes) -> None:
        """Write the whole object (parent folders created on local disk)."""
        try:
            if not self.remote:
                self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(self.path, data)
        except OSError as err:
            raise StorageWriteError(str(self._fail("write", err))) from None

    def exists(self) -> bool:
        """True when something (file or folder) is there."""
        try:
            return self.fs.exists(self.path)
        except OSError as err:
            raise self._fail("inspect", err) from None

    def is_file(self) -> bool:
        """True when a file (not a folder) is there."""
        try:
            return self.fs.isfile(self.path)
        except OSError as err:
            raise self._fail("inspect", err) from None

    def list(self) -> list[str]:
        """Names of the entries in this folder (sorted; empty when it does not exist)."""
        try:
            entries = self.fs.ls(self.path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise self._fail("list", err) from None
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def delete(self) -> None:
        """Remove the file or folder (recursively); absent is fine."""
        try:
            if self.remote:  # a listing cached before the object was written must not hide it
                self.fs.invalidate_cache(self.path)
            if self.fs.exists(self.path):
                self.fs.rm(self.path, recursive=True)
        except OSError as err:
            raise self._fail("delete", err) from None

    def zarr_store(self, read_only: bool = False) -> zarr.abc.store.Store:
        """A Zarr store on this target (credentials from the environment/AWS chain)."""
        import zarr

        if self.remote:
            return zarr.storage.FsspecStore.from_url(self.url, storage_options=self.options, read_only=read_only)
        return zarr.storage.LocalStore(self.url.removeprefix("file://"), read_only=read_only)

    def atomic_put(self, local: Path) -> str:
        """Publish the finished file `local` here; on any failure nothing is left under either the
        final or a temporary name, and the error names this URL."""
        fs, remote = self.fs, self.path
        parent = remote.rsplit("/", 1)[0]
        target = f"{parent}/.{remote.rsplit('/', 1)[-1]}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}" \
            if not self.remote else remote
        try:
            fs.makedirs(parent, exist_ok=True)
            fs.put_file(str(local), target)
            if target != remote:
                os.replace(target, remote)
        except BaseException as err:
            if target != remote:
                with contextlib.suppress(OSError):
                    os.remove(target)
            if isinstance(err, OSError):
                reason = err.strerror or str(err)
                raise StorageWriteError(f"cannot write {redact(self.url)}: {reason}; nothing was published under "
                                        "that name: free space, fix permissions or pick another output") from None
            raise
        return self.url

    def create_exclusive(self, data: bytes) -> bool:
        """Write `data` here only if nothing is here yet, atomically: False when something is. Locally
        O_CREAT|O_EXCL; on an object store one conditional PUT (`If-None-Match: *`, honoured by AWS S3
        and SeaweedFS; a store that ignores it would let two writers both win)."""
        try:
            if not self.remote:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                return True
            from fsspec.asyn import sync

            fs = self.fs
            bucket, key = self.path.split("/", 1)
            sync(fs.loop, fs._call_s3, "put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            fs.invalidate_cache(self.path)  # written behind the filesystem's listing cache
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if "pre-condition" in str(err).lower() or "precondition" in str(err).lower():
                return False
            raise StorageWriteError(str(self._fail("write", err))) from None

    def atomic_write_bytes(self, data: bytes) -> None:
        """Publish `data` here whole or not at all (temp name + rename locally, one PUT on a store)."""
        if self.remote:
            self.write_bytes(data)
            return
        with staging_dir("misomap-put") as tmp:
            local = tmp / "data"
            local.write_bytes(data)
            self.atomic_put(local)


def _stale(path: Path) -> bool:
    """True for a staging folder whose owning process is gone."""
    try:
        pid = int(path.name.split("-")[-2])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextlib.contextmanager
def staging_dir(prefix: str) -> Iterator[Path]:
    """A private local folder for building files before publication, removed on every exit; those
    of killed runs (same prefix, dead pid) are removed first."""
    base = Path(tempfile.gettempdir())
    for old in base.glob(f"{prefix}-*-*"):
        if old.is_dir() and _stale(old):
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed staging folder %s of a stopped run", old)
    path = base / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
