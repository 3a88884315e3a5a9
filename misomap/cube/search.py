"""STAC search per source: bounded retries, optional URL signing, and item checks before stacking.

Everything a stack needs is verified here, once, so a bad catalog fails with the item and asset
named instead of deep inside a dask task.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import pystac
import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3 import Retry

from misomap.cube.config import CubeConfig, SourceConfig
from misomap.cube.errors import CubeError, SourceItemError, StacSearchError
from misomap.cube.scaling import item_scaling

log = logging.getLogger(__name__)
_BASELINE_SUFFIX = re.compile(r"_N\d\d\.\d\d$")

Signer = Callable[[pystac.Item], "pystac.Item | None"]


@dataclass(frozen=True)
class FoundItems:
    """The checked items of one source, grouped by season (static sources: one group, `static`)."""

    source: SourceConfig
    groups: dict[str, tuple[pystac.Item, ...]]

    def item_ids(self) -> list[str]:
        """Sorted ids of every item used, for the cube's lineage."""
        return sorted({it.id for items in self.groups.values() for it in items})


def load_signer(path: str) -> Signer:
    """Import a `module:function` URL-signing hook (e.g. `planetary_computer:sign`)."""
    module_name, _, func_name = path.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as err:
        raise CubeError(f"cube.sign={path!r} cannot be imported: {err}") from None
    if not callable(func):
        raise CubeError(f"cube.sign={path!r} is not callable")
    return func


def open_client(url: str, timeout_s: float, max_retries: int, backoff_s: float = 0.5) -> Client:
    """Open a STAC API with bounded, backed-off retries; StacSearchError if it never answers."""
    retry = Retry(total=max_retries, connect=max_retries, read=max_retries, backoff_factor=backoff_s,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None)
    stac_io = StacApiIO(timeout=timeout_s, max_retries=retry)
    try:
        return Client.open(url, stac_io=stac_io)
    except (requests.RequestException, APIError, OSError) as err:
        raise StacSearchError(f"STAC API {url} did not answer after {max_retries} retries with backoff: "
                              f"{type(err).__name__}: {err}") from None


def _epsg_of(item: pystac.Item, asset_key: str) -> int | None:
    fields = {**item.properties, **item.assets[asset_key].extra_fields}
    if fields.get("proj:epsg"):
        return int(fields["proj:epsg"])
    code = fields.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:") and code[5:].isdigit():
        return int(code[5:])
    return None


def check_item(item: pystac.Item, source: SourceConfig) -> pystac.Item:
    """Verify every needed asset exists and has an EPSG code, and that the source's scale/offset rule
    can tell this item's convention; set `proj:epsg`, which stackstac reads."""
    needed = dict(source.bands)
    if source.mask_asset:
        needed["<mask>"] = source.mask_asset
    epsgs = set()
    for band, key in needed.items():
        if key not in item.assets:
            raise SourceItemError(
                f"item {item.id!r} of collection {source.collection!r} has no asset {key!r} "
                f"(band {band!r}); its assets are {sorted(item.assets)}: fix cube.sources.bands")
        epsg = _epsg_of(item, key)
        if epsg is None:
            raise SourceItemError(
                f"item {item.id!r} of collection {source.collection!r}, asset {key!r}: no usable "
                "projection information (needs proj:code 'EPSG:n' or proj:epsg on the item or asset)")
        epsgs.add(epsg)
        item.assets[key].extra_fields["proj:epsg"] = epsg
    if len(epsgs) == 1:
        item.properties["proj:epsg"] = epsgs.pop()
    item_scaling(item, list(source.bands.values()), source.scaling, source.collection)
    return item


def datatake(item: pystac.Item) -> tuple[str, str]:
    """One acquisition's identity: platform and datatake (`s2:datatake_id` without its baseline
    suffix, or `s1:datatake_id`), else platform and sensing time. Overlapping tiles (MGRS granules,
    S1 slices) of one datatake share it."""
    props = item.properties
    platform = str(props.get("platform", "")).lower()
    for key in ("s2:datatake_id", "s1:datatake_id"):
        if props.get(key):
            return platform, _BASELINE_SUFFIX.sub("", str(props[key]))
    when = item.datetime or pystac.utils.str_to_datetime(props["start_datetime"])
    return platform, when.isoformat()


def _mmdd(item: pystac.Item) -> str:
    when = item.datetime or pystac.utils.str_to_datetime(item.properties["start_datetime"])
    return when.strftime("%m-%d")


def search_source(client: Client, url: str, cfg: CubeConfig, source: SourceConfig,
                  bbox: tuple[float, float, float, float], signer: Signer | None) -> FoundItems:
    """Search one collection, drop cloudy and out-of-season items, check and sign the rest."""
    when = None if source.kind == "static" else cfg.datetime  # covariates are timeless
    try:
        items = list(client.search(collections=[source.collection], bbox=list(bbox), datetime=when).items())
    except (requests.RequestException, APIError, OSError) as err:
        raise StacSearchError(f"STAC search of {source.collection!r} at {url} failed: {err}") from None
    if source.max_cloud_cover is not None:
        items = [it for it in items if it.properties.get("eo:cloud_cover", 0.0) <= source.max_cloud_cover]
    if not items:
        raise StacSearchError(
            f"STAC search at {url} found no items of collection {source.collection!r} in bbox "
            f"{[round(v, 4) for v in bbox]} and datetime {when!r}"
            + (f" with eo:cloud_cover <= {source.max_cloud_cover}" if source.max_cloud_cover is not None else ""))
    items.sort(key=lambda it: (it.datetime.isoformat() if it.datetime else "", it.id))
    checked = []
    for it in items:
        it = check_item(it, source)
        if signer is not None:
            it = signer(it) or it
        checked.append(it)
    if source.kind == "static":
        groups = {"static": tuple(checked)}
    else:
        groups = {name: tuple(it for it in checked if win.contains(_mmdd(it)))
                  for name, win in cfg.seasons.items()}
        for name, group in groups.items():
            if not group:
                raise StacSearchError(
                    f"collection {source.collection!r}: none of its {len(checked)} items at {url} fall in "
                    f"season {name!r} ({cfg.seasons[name].start}..{cfg.seasons[name].end})")
    log.info("%s: %s", source.collection, ", ".join(f"{k} {len(v)} items" for k, v in groups.items()))
    return FoundItems(source, groups)
