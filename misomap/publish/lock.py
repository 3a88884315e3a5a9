"""One publisher at a time per publish root: of two runs publishing to one root, the second waits
for the first to finish (or refuses after `wait_s`), so neither prunes the other's version.

Locally an OS lock (fcntl) on `<root>/publish.lock`, released by the kernel when its holder dies.
On an object store a lease object `<root>/publish.lock` (owner, expiry) created by one conditional
PUT (`If-None-Match: *`): only one creator wins; it is read back to confirm the owner and deleted
on release. A lease left by a killed run is broken once it has expired.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError, MissingObjectError
from misomap.core.storage import Target

log = logging.getLogger(__name__)
LOCK = "publish.lock"


class PublishLockError(MisomapError):
    """Another run holds the publish root's lock (names the root, the holder and its expiry)."""


@dataclass(frozen=True)
class Lease:
    """The lock this run holds on a publish root."""

    target: Target
    owner: str

    def check(self) -> None:
        """PublishLockError unless this run still holds the lock (an object-store lease can expire)."""
        if self.target.remote and (_read(self.target) or {}).get("owner") != self.owner:
            raise PublishLockError(f"the publish lock {self.target.url} is no longer this run's (it expired and "
                                   "another run took it): nothing was published; rerun")


def _read(target: Target) -> dict[str, Any] | None:
    try:
        doc = json.loads(target.read_bytes())
    except MissingObjectError:
        return None
    except ValueError:
        return {}  # cut short or garbage: treated as expired
    return doc if isinstance(doc, dict) else {}


@contextlib.contextmanager
def _local(target: Target, wait_s: float) -> Iterator[Lease]:
    os.makedirs(os.path.dirname(target.path), exist_ok=True)
    with open(target.path, "a") as fh:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PublishLockError(f"another run is publishing to {os.path.dirname(target.path)} (it holds "
                                           f"{target.path}); waited {wait_s:g} s: retry when it ends") from None
                log.info("another run is publishing to this root; waiting for it")
                time.sleep(1.0)
        try:
            yield Lease(target, "local")
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _lease(target: Target, wait_s: float, ttl_s: float) -> Iterator[Lease]:
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + wait_s
    while True:
        body = {"owner": owner, "acquired": time.time(), "expires": time.time() + ttl_s}
        if target.create_exclusive(json.dumps(body).encode()) and (_read(target) or {}).get("owner") == owner:
            break
        held = _read(target)
        if held is not None and float(held.get("expires", 0)) < time.time():
            log.warning("breaking the expired publish lease %s (owner %s)", target.url, held.get("owner"))
            target.delete()
            continue
        if time.monotonic() > deadline:
            raise PublishLockError(f"another run is publishing to {target.url.rsplit('/', 1)[0]} (lease {target.url}, "
                                   f"owner {(held or {}).get('owner')}, expires "
                                   f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(float((held or {}).get('expires', 0))))}"
                                   f"); waited {wait_s:g} s: retry when it ends")
        log.info("another run holds the publish lease %s; waiting", target.url)
        time.sleep(2.0)
    lease = Lease(target, owner)
    try:
        yield lease
    finally:
        if (_read(target) or {}).get("owner") == owner:
            target.delete()


@contextlib.contextmanager
def publish_lock(root: str, storage: StorageConfig, wait_s: float = 3600.0,
                 ttl_s: float = 6 * 3600.0) -> Iterator[Lease]:
    """Hold the publish root's lock for the block: an OS lock locally, a lease object (`ttl_s`) on
    an object store. Waits up to `wait_s` for another holder, then PublishLockError."""
    target = Target(root, storage).join(LOCK)
    with (_lease(target, wait_s, ttl_s) if target.remote else _local(target, wait_s)) as lease:
        yield lease
