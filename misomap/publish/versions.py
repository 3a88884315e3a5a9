"""Versioned publishing of a map product: readers only ever see whole versions.

Layout under the publish root (a local folder or s3:// prefix):

    versions/<id>/...            the product's files (map.zarr, cogs/, quicklook.png): changed files
                                 uploaded, unchanged ones copied from the previous version inside
                                 the store (S3 CopyObject, a hard link on a local disk)
    versions/<id>/item.json      its STAC item
    versions/<id>/version.json   the manifest (sha256 of every file), written after the files
    catalog.json                 a STAC catalog whose items are the kept versions
    latest.json                  the pointer `{"version": <id>}`, written last, in one PUT/rename

A reader resolves `latest.json` and reads `versions/<id>/`, which never changes once its manifest
exists; a publish killed anywhere leaves the old pointer and at most an unfinished folder, removed by
the next publish. The newest `keep` versions stay; older ones are removed after the pointer moves.
Only a finished map (its store's complete mark) is published, and only into a root holding nothing
but the layout above.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pystac
from fsspec.implementations.local import LocalFileSystem

from misomap.core.config_base import StorageConfig
from misomap.core.errors import IncompleteInputError, MisomapError, OwnershipError
from misomap.core.storage import Target
from misomap.publish.lock import Lease
from misomap.runtime.records import COMPLETE_ATTR

log = logging.getLogger(__name__)
MANIFEST, POINTER, CATALOG, ITEM = "version.json", "latest.json", "catalog.json", "item.json"
SKIPPED = ("_progress", "stac")
"""Folders of a map output that are not part of the product (completion records, its own STAC)."""
_OURS = re.compile(rf"versions|publish\.lock|({re.escape(CATALOG)}|{re.escape(POINTER)})(\.tmp-[0-9a-f]{{32}})?")
_VERSION = re.compile(r"v\d{5}-[0-9a-f]{12}")
"""Names publishing writes at the root (temp names are leftovers of a killed local rename) and in versions/."""


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


def _read_json(fs: fsspec.AbstractFileSystem, path: str, what: str) -> dict[str, Any] | None:
    """The JSON object at `path`; None when absent; PublishError naming `what` when it is not one."""
    try:
        doc = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        raise PublishError(f"{what} is not JSON ({type(err).__name__}): restore it or point {POINTER} at a "
                           "complete version; nothing was changed") from None
    if not isinstance(doc, dict):
        raise PublishError(f"{what} holds a {type(doc).__name__}, not a JSON object: nothing was changed")
    return doc


def _write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """One object PUT on a store (atomic there); temp file + rename on a local disk."""
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        Path(tmp).parent.mkdir(parents=True, exist_ok=True)
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def _version_of(doc: dict[str, Any], what: str) -> Version:
    try:
        version = Version(str(doc["id"]), str(doc["created"]), str(doc["content_sha256"]), str(doc["inputs_key"]),
                          dict(doc["files"]))
        if not all(isinstance(i, dict) and isinstance(i.get("sha256"), str) for i in version.files.values()):
            raise ValueError("a file entry without sha256")
    except (KeyError, TypeError, ValueError) as err:
        raise PublishError(f"{what} is not a version manifest ({type(err).__name__}: {err}): restore it; "
                           "nothing was changed") from None
    return version


def list_versions(root: str, storage: StorageConfig) -> list[Version]:
    """Complete versions (with a manifest), oldest first."""
    fs, base = _fs(root, storage)
    try:
        names = sorted(posixpath.basename(p) for p in fs.ls(f"{base}/versions", detail=False, refresh=True))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not _VERSION.fullmatch(name):
            continue
        try:
            doc = _read_json(fs, f"{base}/versions/{name}/{MANIFEST}", f"{root}/versions/{name}/{MANIFEST}")
            if doc is not None:
                out.append(_version_of(doc, f"{root}/versions/{name}/{MANIFEST}"))
        except PublishError as err:  # a publish killed while writing it: not a version, pruned later
            log.warning("%s", err)
    return sorted(out, key=lambda v: v.number)


def latest(root: str, storage: StorageConfig, check: bool = False) -> Version | None:
    """The version `latest.json` points to; None before the first publish. PublishError, before
    anything is changed, when the pointer is not `{"version": "<id>"}`, names anything but a
    version folder directly under `versions/` (`../` or another root), or a version without a
    manifest; with `check`, also when a file of that version differs from its manifest."""
    fs, base = _fs(root, storage)
    pointer = _read_json(fs, f"{base}/{POINTER}", f"{root}/{POINTER}")
    if pointer is None:
        return None
    vid = pointer.get("version")
    if set(pointer) != {"version"} or not isinstance(vid, str) or not _VERSION.fullmatch(vid):
        raise PublishError(f"{root}/{POINTER} is not a pointer to a version of this root ({json.dumps(pointer)[:120]}; "
                           f"expected {{\"version\": \"v00001-<12 hex>\"}}): point it at a complete version "
                           f"({[v.id for v in list_versions(root, storage)]}); nothing was changed")
    doc = _read_json(fs, f"{base}/versions/{vid}/{MANIFEST}", f"{root}/versions/{vid}/{MANIFEST}")
    if doc is None:
        raise PublishError(f"{root}/{POINTER} points to version {vid!r}, but {root}/versions/{vid}/{MANIFEST} "
                           f"is missing: restore that version or point {POINTER} at a complete one "
                           f"(complete: {[v.id for v in list_versions(root, storage)]}); nothing was changed")
    version = _version_of(doc, f"{root}/versions/{vid}/{MANIFEST}")
    if version.id != vid:
        raise PublishError(f"{root}/versions/{vid}/{MANIFEST} describes version {version.id!r}: restore it")
    if check:
        verify(root, storage, version)
    return version


def latest_url(root: str, storage: StorageConfig, name: str = "map.zarr") -> tuple[Version, str]:
    """The latest version and the URL of its file or folder `name`, for readers."""
    v = latest(root, storage)
    if v is None:
        raise PublishError(f"nothing is published under {root} yet (no {POINTER})")
    return v, f"{root.rstrip('/')}/versions/{v.id}/{name}"


def child_names(fs: fsspec.AbstractFileSystem, path: str, what: str) -> list[str] | None:
    """Names directly under folder/prefix `path`, listed afresh (no listing cache); None when absent.
    OwnershipError when `path` is a file (`what` names the setting in the message)."""
    try:
        entries = fs.ls(path, detail=True, refresh=True)
    except FileNotFoundError:
        return None
    # a listing may name `path` itself: the file at it, or a folder marker ("path/", size 0) that some
    # stores (SeaweedFS) leave after a recursive delete
    itself = [e for e in entries if str(e["name"]).rstrip("/") == path.rstrip("/")]
    if any(e["type"] == "file" and not str(e["name"]).endswith("/") for e in itself):
        raise OwnershipError(f"{what} is an existing file, not a folder: nothing was changed; set it to a new or "
                             "empty location")
    return [posixpath.basename(str(e["name"]).rstrip("/")) for e in entries if e not in itself]


def check_parts(folder: Target, allowed: frozenset[str], nested: dict[str, frozenset[str]], writer: str) -> None:
    """OwnershipError, before any write, when `folder` (or a subfolder named in `nested`) holds a name
    its `writer` does not write (nothing is changed)."""
    fs, path = folder.fs, folder.path
    names = child_names(fs, path, folder.url) or []
    foreign = sorted(set(names) - allowed)
    for sub, parts in nested.items():
        if sub in names:
            foreign += sorted(f"{sub}/{n}" for n in child_names(fs, f"{path}/{sub}", f"{folder.url}/{sub}") or []
                              if n not in parts)
    if foreign:
        raise OwnershipError(f"{folder.url} holds {', '.join(foreign[:3])} not written by {writer}: nothing was "
                             "changed; remove them or set workdir to a new location")


def check_owned(root: str, storage: StorageConfig) -> None:
    """Refuse, before any write, a publish root holding anything publishing did not write (nothing
    there is changed): absent, empty or the layout above is fine."""
    fs, base = _fs(root, storage)
    names = child_names(fs, base, f"publish.root {root}") or []
    foreign = [n for n in names if not _OURS.fullmatch(n)]
    if "versions" in names:
        foreign += [f"versions/{n}" for n in child_names(fs, f"{base}/versions", f"{root}/versions") or []
                    if not _VERSION.fullmatch(n)]
    if foreign:
        raise OwnershipError(f"publish.root {root} holds {', '.join(sorted(foreign)[:3])} not written by misomap "
                             "publishing: nothing was changed; set publish.root to a new or empty location")


def _require_finished(fs: fsspec.AbstractFileSystem, base: str, src: str) -> None:
    """PublishError without a map.zarr under `src`; IncompleteInputError when its complete mark is missing."""
    for meta in ("zarr.json", ".zattrs"):  # Zarr v3 (attributes inside), v2
        try:
            doc = json.loads(fs.cat_file(f"{base}/map.zarr/{meta}"))
        except FileNotFoundError:
            continue
        if COMPLETE_ATTR in ((doc.get("attributes") or {}) if meta == "zarr.json" else doc):
            return
        raise IncompleteInputError(f"map {src}/map.zarr is unfinished (no complete mark): finish the run that "
                                   "writes it, then publish; nothing was published")
    raise PublishError(f"no finished map.zarr under {src}: nothing to publish")


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
    problems = version_problems(root, storage, version)
    if problems:
        raise PublishError(f"version {version.id} under {root} is damaged: {'; '.join(problems[:3])}"
                           f"{' ...' if len(problems) > 3 else ''}: restore it (or remove it and publish anew)")


def version_problems(root: str, storage: StorageConfig, version: Version) -> list[str]:
    """Every file of `version` that is missing or differs from its manifest's sha256, named."""
    fs, base = _fs(root, storage)
    vbase = f"{base}/versions/{version.id}"
    problems = []
    for rel, info in version.files.items():
        try:
            data = fs.cat_file(f"{vbase}/{rel}")
        except FileNotFoundError:
            problems.append(f"missing file {rel}")
            continue
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            problems.append(f"corrupt file {rel}: sha256 differs from the manifest")
    return problems


def publish(src: str, root: str, storage: StorageConfig, inputs_key: str, keep: int,
            bbox: tuple[float, float, float, float], title: str = "misomap map", lease: Lease | None = None
            ) -> tuple[Version, bool]:
    """Copy the product under `src` into a new version, move the pointer, prune; returns the
    version and whether it is new (False when the latest already holds identical content).
    `bbox` (lon/lat) goes into each version's STAC item. Run under the root's publish lock
    (`lease`, checked again right before the pointer moves)."""
    if keep < 1:
        raise PublishError(f"publish.keep must be at least 1, got {keep}")
    check_owned(root, storage)
    current = latest(root, storage, check=True)  # refuses a bad pointer or damaged version before any write
    sfs, sbase = _fs(src, storage)
    _require_finished(sfs, sbase, src)
    sources = _product_files(sfs, sbase)
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
    reused: list[tuple[str, str]] = []
    for rel, path in sources.items():
        before = current.files.get(rel) if current is not None else None
        if current is not None and before is not None and before["sha256"] == files[rel]["sha256"]:
            reused.append((f"{base}/versions/{current.id}/{rel}", f"{vbase}/{rel}"))
            continue
        data = sfs.cat_file(path)
        if hashlib.sha256(data).hexdigest() != files[rel]["sha256"]:
            raise PublishError(f"{src}/{rel} changed while publishing: is another run writing the map?")
        fs.pipe_file(f"{vbase}/{rel}", data)
    _copy_in_store(fs, reused)
    version = Version(vid, datetime.now(UTC).isoformat(timespec="seconds"), digest, inputs_key, files)
    fs.pipe_file(f"{vbase}/{ITEM}", _item(version, bbox, title))
    _write_atomic(fs, f"{vbase}/{MANIFEST}", json.dumps(version.__dict__, indent=1, sort_keys=True).encode())
    kept = list_versions(root, storage)[-keep:]
    if lease is not None:
        lease.check()
    _write_atomic(fs, f"{base}/{CATALOG}", _catalog(root, kept, title))
    _write_atomic(fs, f"{base}/{POINTER}", json.dumps({"version": vid}).encode())
    log.info("published %s under %s (%d of %d files unchanged, copied within the store)", vid, root,
             len(reused), len(sources))
    _prune(fs, base, {v.id for v in kept})
    return version, True


def _copy_in_store(fs: fsspec.AbstractFileSystem, pairs: list[tuple[str, str]]) -> None:
    """Copy unchanged files of the previous version (source, destination) without sending them
    through this process: concurrent server-side copies on object stores, hard links on a local disk
    (version files never change)."""
    if not isinstance(fs, LocalFileSystem):
        if pairs:
            fs.copy([src for src, _ in pairs], [dst for _, dst in pairs])
        return
    for src, dst in pairs:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # another device, or no hard links there: a plain copy
            fs.copy(src, dst)


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
