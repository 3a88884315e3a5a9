"""Versioned publishing of a map product: readers only ever see whole versions.

Layout under the publish root (a local folder or s3:// prefix):

    versions/<id>/...            the product's files (map.zarr, cogs/, quicklook.png), copied
    versions/<id>/item.json      its STAC item
    versions/<id>/version.json   the manifest (sha256 of every file), written after the files
    catalog.json                 a STAC catalog whose items are the kept versions
    latest.json                  the pointer `{"version": <id>}`, written last, in one PUT/rename

A reader resolves `latest.json` and reads `versions/<id>/`, which never changes once its manifest
exists; a publish killed anywhere leaves the old pointer and at most an unfinished folder, removed by
the next publish. The newest `keep` versions stay; older ones are removed after the pointer moves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fsspec
import pystac
from fsspec.implementations.local import LocalFileSystem

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError
from misomap.core.storage import Target

log = logging.getLogger(__name__)
MANIFEST, POINTER, CATALOG, ITEM = "version.json", "latest.json", "catalog.json", "item.json"
SKIPPED = ("_progress", "stac")
"""Folders of a map output that are not part of the product (completion records, its own STAC)."""


class PublishError(MisomapError):
    """Publishing cannot go on: a dangling pointer, a damaged version, an unreadable root."""


@dataclass(frozen=True)
class Version:
    """One complete published version."""

    id: str
    created: str
    content_sha256: str
    inputs_key: str
    files: dict[str, dict[str, Any]]

    @property
    def number(self) -> int:
        return int(self.id[1:].split("-", 1)[0])


def _fs(root: str, storage: StorageConfig) -> tuple[fsspec.AbstractFileSystem, str]:
    target = Target(root, storage)
    return target.fs, target.path


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """One object PUT on a store (atomic there); temp file + rename on a local disk."""
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        Path(tmp).parent.mkdir(parents=True, exist_ok=True)
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def _version_of(doc: dict[str, Any]) -> Version:
    return Version(doc["id"], doc["created"], doc["content_sha256"], doc["inputs_key"], doc["files"])


def list_versions(root: str, storage: StorageConfig) -> list[Version]:
    """Complete versions (with a manifest), oldest first."""
    fs, base = _fs(root, storage)
    try:
        names = sorted(posixpath.basename(p) for p in fs.ls(f"{base}/versions", detail=False, refresh=True))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        doc = _read_json(fs, f"{base}/versions/{name}/{MANIFEST}")
        if doc is not None:
            out.append(_version_of(doc))
    return sorted(out, key=lambda v: v.number)


def latest(root: str, storage: StorageConfig) -> Version | None:
    """The version `latest.json` points to; None before the first publish. PublishError when the
    pointer names a version whose manifest is missing (nothing is changed)."""
    fs, base = _fs(root, storage)
    pointer = _read_json(fs, f"{base}/{POINTER}")
    if pointer is None:
        return None
    vid = pointer.get("version")
    doc = _read_json(fs, f"{base}/versions/{vid}/{MANIFEST}")
    if doc is None:
        raise PublishError(f"{root}/{POINTER} points to version {vid!r}, but {root}/versions/{vid}/{MANIFEST} "
                           f"is missing: restore that version or point {POINTER} at a complete one "
                           f"(complete: {[v.id for v in list_versions(root, storage)]}); nothing was changed")
    return _version_of(doc)


def latest_url(root: str, storage: StorageConfig, name: str = "map.zarr") -> tuple[Version, str]:
    """The latest version and the URL of its file or folder `name`, for readers."""
    v = latest(root, storage)
    if v is None:
        raise PublishError(f"nothing is published under {root} yet (no {POINTER})")
    return v, f"{root.rstrip('/')}/versions/{v.id}/{name}"


def _product_files(fs: fsspec.AbstractFileSystem, base: str) -> dict[str, str]:
    """Relative path -> absolute path of every product file under `base`."""
    out = {}
    for path in fs.find(base):
        rel = posixpath.relpath(path, base)
        if rel.split("/", 1)[0] not in SKIPPED and not rel.endswith(".lock"):
            out[rel] = path
    return dict(sorted(out.items()))


def content_digest(files: dict[str, dict[str, Any]]) -> str:
    """sha256 over every file's relative path and sha256: equal for byte-identical products."""
    h = hashlib.sha256()
    for rel, info in sorted(files.items()):
        h.update(f"{rel}\0{info['sha256']}\n".encode())
    return h.hexdigest()


def verify(root: str, storage: StorageConfig, version: Version) -> None:
    """PublishError unless every file of `version` is present with the manifest's sha256."""
    fs, base = _fs(root, storage)
    vbase = f"{base}/versions/{version.id}"
    for rel, info in version.files.items():
        try:
            data = fs.cat_file(f"{vbase}/{rel}")
        except FileNotFoundError:
            raise PublishError(f"version {version.id} lacks {rel}") from None
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise PublishError(f"version {version.id}: {rel} differs from its manifest")


def publish(src: str, root: str, storage: StorageConfig, inputs_key: str, keep: int,
            bbox: tuple[float, float, float, float], title: str = "misomap map") -> tuple[Version, bool]:
    """Copy the product under `src` into a new version, move the pointer, prune; returns the
    version and whether it is new (False when the latest already holds identical content).
    `bbox` (lon/lat) goes into each version's STAC item."""
    if keep < 1:
        raise PublishError(f"publish.keep must be at least 1, got {keep}")
    current = latest(root, storage)  # refuses a dangling pointer before anything is written
    sfs, sbase = _fs(src, storage)
    sources = _product_files(sfs, sbase) if sfs.exists(sbase) else {}
    if "map.zarr/zarr.json" not in sources and "map.zarr/.zgroup" not in sources:
        raise PublishError(f"no finished map.zarr under {src}: nothing to publish")
    files = {}
    for rel, path in sources.items():  # hash first: identical content publishes nothing
        data = sfs.cat_file(path)
        files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    digest = content_digest(files)
    if current is not None and current.content_sha256 == digest:
        log.info("publish: latest version %s already holds this content; nothing published", current.id)
        return current, False
    fs, base = _fs(root, storage)
    try:
        taken = [posixpath.basename(p) for p in fs.ls(f"{base}/versions", detail=False, refresh=True)]
    except FileNotFoundError:
        taken = []
    number = 1 + max([int(n[1:].split("-", 1)[0]) for n in taken if n.startswith("v")] or [0])
    vid = f"v{number:05d}-{digest[:12]}"
    vbase = f"{base}/versions/{vid}"
    for rel, path in sources.items():
        data = sfs.cat_file(path)
        if hashlib.sha256(data).hexdigest() != files[rel]["sha256"]:
            raise PublishError(f"{src}/{rel} changed while publishing: is another run writing the map?")
        fs.pipe_file(f"{vbase}/{rel}", data)
    version = Version(vid, datetime.now(timezone.utc).isoformat(timespec="seconds"), digest, inputs_key, files)
    fs.pipe_file(f"{vbase}/{ITEM}", _item(version, bbox, title))
    fs.pipe_file(f"{vbase}/{MANIFEST}", json.dumps(version.__dict__, indent=1, sort_keys=True).encode())
    kept = list_versions(root, storage)[-keep:]
    _write_atomic(fs, f"{base}/{CATALOG}", _catalog(root, kept, title))
    _write_atomic(fs, f"{base}/{POINTER}", json.dumps({"version": vid}).encode())
    log.info("published %s under %s", vid, root)
    _prune(fs, base, {v.id for v in kept})
    return version, True


def _prune(fs: fsspec.AbstractFileSystem, base: str, kept: set[str]) -> None:
    """Remove versions not kept (older complete ones and leftovers of killed publishes)."""
    for path in fs.ls(f"{base}/versions", detail=False, refresh=True):
        if posixpath.basename(path) not in kept:
            log.info("publish: removing old version %s", posixpath.basename(path))
            fs.rm(path, recursive=True)


def _item(version: Version, bbox: tuple[float, float, float, float], title: str) -> bytes:
    """The version's STAC item: its Zarr store and COGs as assets (hrefs relative to the item)."""
    w, so, e, n = bbox
    geometry = {"type": "Polygon", "coordinates": [[[w, so], [e, so], [e, n], [w, n], [w, so]]]}
    item = pystac.Item(id=version.id, geometry=geometry, bbox=list(bbox),
                       datetime=datetime.fromisoformat(version.created), properties={"title": f"{title} {version.id}"})
    item.add_asset("zarr", pystac.Asset(href="./map.zarr", media_type="application/vnd+zarr", roles=["data"]))
    for rel in version.files:
        if rel.endswith(".tif"):
            item.add_asset(posixpath.basename(rel)[:-4], pystac.Asset(href=f"./{rel}", media_type=pystac.MediaType.COG,
                                                                     roles=["data"]))
    return (json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1) + "\n").encode()


def _catalog(root: str, versions: list[Version], title: str) -> bytes:
    """The STAC catalog: one item link per kept version, oldest first."""
    cat = pystac.Catalog(id="misomap-published", description=f"{title}: published versions, oldest first; "
                         f"{POINTER} names the current one")
    body = cat.to_dict(include_self_link=False, transform_hrefs=False)
    body["links"] = [link for link in body["links"] if link["rel"] != "root"]
    body["links"] += [{"rel": "item", "href": f"./versions/{v.id}/{ITEM}", "type": "application/geo+json",
                       "title": v.id} for v in versions]
    return (json.dumps(body, indent=1) + "\n").encode()
