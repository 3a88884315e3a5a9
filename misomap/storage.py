"""Atomic publication of finished files: a file appears under its final name whole or not at all.

Local targets get a temporary name in the same folder, then an atomic rename; object-store targets
are written by one PUT, which S3 makes visible only once complete. Local staging folders carry
their process id, so those left by a killed run are removed by the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec

from misomap.core.errors import StorageWriteError, redact

log = logging.getLogger(__name__)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def atomic_put(fs: fsspec.AbstractFileSystem, local: Path, remote: str) -> str:
    """Publish the finished file `local` at `remote`; on any failure nothing is left under either
    the final or the temporary name, and the error names `remote`."""
    parent = remote.rsplit("/", 1)[0]
    target = f"{parent}/.{remote.rsplit('/', 1)[-1]}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}" \
        if _is_local(fs) else remote
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
            raise StorageWriteError(f"cannot write {redact(remote)}: {reason}; nothing was published under "
                                    "that name: free space, fix permissions or pick another output") from None
        raise
    return remote


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
