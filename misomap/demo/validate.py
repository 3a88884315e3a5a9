"""Offline STAC validation: core schemas shipped inside pystac, extension schemas vendored in
misomap/demo/schemas (written from the extension specs), checked with jsonschema."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator
from pystac.validation.local_validator import get_local_schema_cache
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from misomap.demo.spec import DemoWorldError

_CORE = {
    "Feature": "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
    "Collection": "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json",
    "Catalog": "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json",
}


@lru_cache(maxsize=1)
def _registry() -> Registry:
    schemas = dict(get_local_schema_cache())
    for f in resources.files("misomap.demo").joinpath("schemas").iterdir():
        if f.name.endswith(".json"):
            doc = json.loads(f.read_text())
            schemas[doc["$id"]] = doc
    return Registry().with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT7))
        for uri, doc in schemas.items())


def stac_errors(doc: dict[str, Any]) -> list[str]:
    """Schema errors of a STAC item, collection or catalog (core + every declared extension)."""
    kind = doc.get("type")
    if kind not in _CORE:
        return [f"not a STAC item, collection or catalog (type={kind!r})"]
    if doc.get("stac_version") != "1.1.0":
        return [f"{doc.get('id')}: only STAC 1.1.0 schemas are available offline"]
    registry = _registry()
    errors = []
    for uri in [_CORE[kind], *doc.get("stac_extensions", [])]:
        try:
            schema = registry.contents(uri)
        except LookupError:
            raise DemoWorldError(f"no offline schema for {uri} (declared by {doc.get('id')}); "
                                 "vendor it into misomap/demo/schemas") from None
        for err in Draft7Validator(schema, registry=registry).iter_errors(doc):
            where = "/".join(str(p) for p in err.absolute_path) or "<root>"
            errors.append(f"{doc.get('id')}: {uri.rsplit('/', 3)[-3]} {where}: {err.message[:200]}")
    return errors
