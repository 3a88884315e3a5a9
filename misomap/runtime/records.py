"""Completion records and run locks that make chunked jobs resumable and safe to rerun.

A chunk's existence in Zarr is no proof it was written (all-fill chunks are skipped), so each
finished chunk gets its own small JSON record under a progress folder, written only after its data
is durable. A store's complete mark (attribute `misomap_complete`, written last) carries the
digest of its records, so `misomap verify` can tell whether they changed since.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misomap.core.errors import MissingObjectError
from misomap.core.storage import Target, is_remote

log = logging.getLogger(__name__)

COMPLETE_ATTR = "misomap_complete"
"""A finished store's mark (cube, map, embeddings): written last, the digest of its completion records."""


@dataclass(frozen=True)
class CompletionRecords:
    """One JSON record per finished chunk under `target` (a local folder or object-store prefix).

    With a `fingerprint` (the cube: its inputs' digest) every record names itself and the run, and
    records of another fingerprint never count. Without one (map, embeddings: the store's own
    attributes carry the run's identity, and a new identity starts a new store and clears the
    records) a record is the chunk task's summary alone."""

    target: Target
    fingerprint: str | None = None

    def _file(self, key: str) -> Target:
        return self.target.join(f"{key}.json")

    def _body(self, key: str, info: dict[str, Any]) -> bytes:
        if self.fingerprint is None:
            return json.dumps(info, sort_keys=True).encode()
        return json.dumps({"name": key, "fingerprint": self.fingerprint, **info}, sort_keys=True).encode()

    def mark(self, key: str, info: dict[str, Any] | None = None) -> None:
        """Record `key` (a chunk key, or `template`) as finished, with the task's summary: what it
        wrote and the output's checksum."""
        self._file(key).write_bytes(self._body(key, info or {}))

    def record(self, key: str) -> dict[str, Any] | None:
        """One record's content; None when absent, cut short or of another fingerprint."""
        try:
            rec = json.loads(self._file(key).read_bytes())
        except (json.JSONDecodeError, MissingObjectError):
            return None  # absent, or cut short by a kill: that chunk is simply redone
        if self.fingerprint is not None and rec.get("fingerprint") != self.fingerprint:
            return None
        return rec

    def done(self) -> set[str]:
        """Keys recorded as finished (by a run of this fingerprint, when there is one)."""
        keys = {name[:-5] for name in self.target.list() if name.endswith(".json")}
        if self.fingerprint is None:
            return keys
        return {k for k in keys if self.record(k) is not None}

    def forget(self, key: str) -> None:
        """Drop one record (a superseded chunk's)."""
        self._file(key).delete()

    def clear(self) -> None:
        """Forget every record (before a fresh template is written); only record files are removed."""
        for name in self.target.list():
            if name.endswith(".json"):
                self.target.join(name).delete()

    def digest(self) -> str:
        """sha256 over the records by key - each record's bytes, prefixed by its key where the
        record does not name itself: what a store's complete mark vouches for."""
        h = hashlib.sha256()
        for key in sorted(self.done()):
            if self.fingerprint is None:
                h.update(key.encode())
            h.update(self._file(key).read_bytes())
        return h.hexdigest()


def forget_stale(records: CompletionRecords, current: set[str]) -> None:
    """Drop the records not named in `current` (superseded inputs; keeps a state folder small)."""
    for name in records.done() - current:
        records.forget(name)


def chunk_digests(records: CompletionRecords, names: list[str], keys: list[str] | None = None) -> dict[str, str]:
    """{chunk key: output sha256} from the records `names` (the chunks `keys`, default `names`):
    the manifest readers check chunks against."""
    out = {}
    for name, key in zip(names, keys or names, strict=True):
        rec = records.record(name)
        if rec is None or "sha256" not in rec:
            raise MissingObjectError(f"completion record {records.target.join(name + '.json').url} is missing or "
                                     "has no sha256: rerun the job to redo that chunk")
        out[key] = rec["sha256"]
    return out


@contextlib.contextmanager
def run_lock(output: str) -> Iterator[None]:
    """Serialise runs on the same local output behind an exclusive file lock.

    Object stores have no atomic lock; there, runs rely on every chunk write being a pure,
    deterministic function of (key, spec), so concurrent runs end identical.
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
