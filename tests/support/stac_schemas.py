"""Offline STAC validation against the upstream JSON schemas kept in tests/data/stac-schemas.

Each schema file lies at the path of the URL it is served from (`<host>/<path>`), so the registry
maps every `$ref` URL to its file without network; tests/data/stac-schemas/SOURCES.md names the
repository, path and commit of each file. A schema the registry lacks is an error, never a skip.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "stac-schemas"
CORE = {
    "Feature": "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
    "Collection": "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json",
    "Catalog": "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json",
}


def schema_files() -> dict[str, Path]:
    """URL → local file of every stored upstream schema."""
    return {"https://" + p.relative_to(SCHEMAS).as_posix(): p for p in sorted(SCHEMAS.rglob("*.json"))}


@lru_cache(maxsize=1)
def registry() -> Registry:
    """A `referencing` registry serving every stored schema under its URL (and its `$id`)."""
    resources = []
    for url, path in schema_files().items():
        doc = json.loads(path.read_text())
        resource = Resource.from_contents(doc, default_specification=DRAFT7)
        resources.append((url, resource))
        if doc.get("$id", "").rstrip("#") not in ("", url):
            resources.append((doc["$id"].rstrip("#"), resource))
    return Registry().with_resources(resources)


def stac_errors(doc: dict[str, Any]) -> list[str]:
    """Schema errors of a STAC item, collection or catalog: the core schema of its type and every
    extension it declares, as upstream publishes them."""
    kind = doc.get("type")
    if kind not in CORE:
        return [f"not a STAC item, collection or catalog (type={kind!r})"]
    if doc.get("stac_version") != "1.1.0":
        return [f"{doc.get('id')}: stac_version {doc.get('stac_version')!r}: only 1.1.0 schemas are stored"]
    reg = registry()
    errors = []
    for uri in [CORE[kind], *doc.get("stac_extensions", [])]:
        try:
            schema = reg.contents(uri.rstrip("#"))
        except LookupError:
            raise LookupError(f"no stored schema for {uri} (declared by {doc.get('id')}): fetch it into "
                              f"{SCHEMAS} and name its source in SOURCES.md") from None
        for err in Draft7Validator(schema, registry=reg).iter_errors(doc):
            where = "/".join(str(p) for p in err.absolute_path) or "<root>"
            causes = sorted({"/".join(str(p) for p in leaf.absolute_path) for leaf in _leaves(err)} - {""})
            because = f" (at {', '.join(causes[:5])})" if causes else ""
            errors.append(f"{doc.get('id')}: {uri} {where}: {err.message[:300]}{because}")
    return errors


def _leaves(err: Any) -> list[Any]:
    """The innermost errors under a oneOf/anyOf/allOf failure: where the document really fails."""
    if not err.context:
        return [err]
    return [leaf for sub in err.context for leaf in _leaves(sub)]


def tree_errors(root: Path) -> dict[str, list[str]]:
    """Errors of every STAC JSON file under `root` (files that are not STAC objects are skipped)."""
    found = {}
    for path in sorted(root.rglob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and doc.get("type") in CORE:
            found[str(path.relative_to(root))] = stac_errors(doc)
    return found
