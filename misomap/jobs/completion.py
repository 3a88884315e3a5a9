"""Completion records and run locks that make chunked jobs resumable and safe to rerun.

A chunk's existence in Zarr is no proof it was written (all-fill chunks are skipped), so each
finished chunk gets its own small record, written only after its data is durable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from misomap.core.storage import is_remote

log = logging.getLogger(__name__)

COMPLETE_ATTR = "misomap_complete"
"""A finished store's mark (cube, map, embeddings): written last, the digest of its completion records."""


class CompletionLog:
    """One JSON record per finished unit of work, under `root` (local path or s3:// URL)."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root = root.rstrip("/")
        self.fs, self.path = fsspec.core.url_to_fs(self.root, **(storage_options or {}))

    def _record(self, key: str) -> str:
        return f"{self.path}/{key}.json"

    def is_done(self, key: str) -> bool:
        """True when `key` has a completion record."""
        return self.fs.exists(self._record(key))

    def done_keys(self) -> set[str]:
        """Keys of every finished unit."""
        try:
            names = self.fs.ls(self.path, detail=False, refresh=True)
        except FileNotFoundError:
            return set()
        return {Path(n).name[:-5] for n in names if n.endswith(".json")}

    def record(self, key: str) -> dict[str, Any] | None:
        """The record of `key`, None when absent or cut short."""
        try:
            return json.loads(self.fs.cat_file(self._record(key)))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def digest(self) -> str:
        """sha256 over every record, by key: what a store's complete mark vouches for."""
        h = hashlib.sha256()
        for key in sorted(self.done_keys()):
            h.update(key.encode())
            h.update(self.fs.cat_file(self._record(key)))
        return h.hexdigest()

    def mark_done(self, key: str, info: dict[str, Any]) -> None:
        """Record `key` as finished, with a small JSON summary of what was written."""
        self.fs.makedirs(self.path, exist_ok=True)
        self.fs.pipe_file(self._record(key), json.dumps(info, sort_keys=True).encode())

    def clear(self) -> None:
        """Forget every record (used when an output is rebuilt from scratch)."""
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)


@contextlib.contextmanager
def run_lock(output: str) -> Iterator[None]:
    """Serialise runs on the same local output behind an exclusive file lock.

    Object stores have no atomic lock; there, runs rely on every chunk write being a pure,
    deterministic function of (region, config), so concurrent runs end identical.
    """
    if is_remote(output):
        yield
        return
    lock_path = Path(output.removeprefix("file://")).with_name(Path(output).name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another run holds %s; waiting for it", lock_path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
