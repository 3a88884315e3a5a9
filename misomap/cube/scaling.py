"""Digital numbers to physical values, per catalog: which scale and offset an item's pixels really
carry (docs/contracts.md §1 "Scale and offset per catalog").

Sentinel-2 L2A since processing baseline 04.00 (2022-01-25) stores DN = 10000·ρ + 1000 (ESA:
ρ = (DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE, BOA_ADD_OFFSET = -1000); older baselines store
DN = 10000·ρ. Catalogs differ in what they did about it, and their `raster:bands` cannot always be
trusted, so each catalog gets one rule:

- `earth-search-v1` (Element 84 `sentinel-2-l2a`): the item property `earthsearch:boa_offset_applied`
  says whether Element 84 already removed the +1000 from the COG pixels; the maintainers call it
  "the truth" while `raster:bands` keeps saying offset -0.1 on such items (Element84/earth-search
  #9, #71; cirrus-geo/cirrus-earth-search #21, #25). Pixels carry the +1000 exactly when the
  baseline is >= 04.00 and the flag is not true. Scale from `raster:bands` (0.0001).
- `planetary-computer-s2` (Microsoft `sentinel-2-l2a`): assets are ESA's pixels as delivered and
  carry no `raster:bands` scale/offset; pixels carry the +1000 exactly when `s2:processing_baseline`
  >= 04.00 (the PC "Baseline Change" example; microsoft/PlanetaryComputer #134). Scale 0.0001.
- `raster-bands`: `raster:bands` scale and offset as written (default 1 and 0): Sentinel-1 RTC,
  Copernicus DEM and the demo world's covariates.
- `auto` picks one of these per item: the Earth Search flag present -> `earth-search-v1`;
  Sentinel-2 without `raster:bands` scale/offset -> `planetary-computer-s2`; not Sentinel-2 ->
  `raster-bands`. A Sentinel-2 item matching none (e.g. `raster:bands` offset but no flag) is refused
  by name: configure the source's `scaling`.

Both Sentinel-2 rules bring pixels that lack the +1000 up to the 04.00 encoding (DN + 1000, exact in
float32) and then apply ρ = DN·scale − 0.1, so items already in that encoding give the same float32
values as before this module existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pystac

from misomap.cube.errors import SourceItemError

ScalingRule = Literal["auto", "earth-search-v1", "planetary-computer-s2", "raster-bands"]

S2_QUANTIFICATION = 10_000.0
S2_BOA_ADD_OFFSET = -1000.0
"""ESA's BOA_ADD_OFFSET (DN) of processing baseline 04.00 and later, every band."""
ES_FLAG = "earthsearch:boa_offset_applied"
BASELINE = "s2:processing_baseline"


@dataclass(frozen=True)
class Scaling:
    """value = (DN + dn_shift) · scale + offset, for one asset of one item."""

    dn_shift: float
    scale: float
    offset: float


def _band(item: pystac.Item, key: str) -> dict:
    return (item.assets[key].extra_fields.get("raster:bands") or [{}])[0]


def _is_sentinel2(item: pystac.Item) -> bool:
    props = item.properties
    names = f"{props.get('platform', '')} {props.get('constellation', '')}".lower().replace(" ", "-")
    return "sentinel-2" in names or any(k.startswith("s2:") for k in props)


def _baseline(item: pystac.Item) -> tuple[int, int] | None:
    value = item.properties.get(BASELINE)
    try:
        major, minor = str(value).split(".")
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def detect_rule(item: pystac.Item, keys: list[str]) -> str | None:
    """The rule `auto` uses for this item, or None when its convention cannot be told."""
    if ES_FLAG in item.properties:
        return "earth-search-v1"
    if not _is_sentinel2(item):
        return "raster-bands"
    if not any({"scale", "offset"} & set(_band(item, k)) for k in keys):
        return "planetary-computer-s2"
    return None


def _carries_boa_offset(item: pystac.Item, rule: str, source: str) -> bool:
    """Whether the item's pixels carry the +1000 of processing baseline 04.00."""
    if rule == "earth-search-v1" and item.properties.get(ES_FLAG) is True:
        return False
    baseline = _baseline(item)
    if baseline is None:
        raise SourceItemError(
            f"item {item.id!r} of {source!r}: scale/offset rule {rule!r} needs {BASELINE!r} "
            f"('NN.NN'), got {item.properties.get(BASELINE)!r}"
            + (f" and {ES_FLAG!r} is not true" if rule == "earth-search-v1" else "")
            + ": its reflectance offset cannot be determined; fix the catalog or drop the item")
    return baseline >= (4, 0)


def item_scaling(item: pystac.Item, keys: list[str], rule: ScalingRule, source: str) -> list[Scaling]:
    """Scaling of each asset in `keys` (data bands, not class bands) of one item under `rule`.

    SourceItemError names the item when its convention cannot be determined.
    """
    if rule == "auto":
        found = detect_rule(item, keys)
        if found is None:
            raise SourceItemError(
                f"item {item.id!r} of {source!r} is Sentinel-2 with raster:bands scale/offset but no "
                f"{ES_FLAG!r}: whether its pixels already carry the baseline-04.00 offset cannot be "
                "determined; set `scaling` of this source to earth-search-v1, planetary-computer-s2 "
                "or raster-bands (docs/contracts.md §1)")
        rule = found  # type: ignore[assignment]
    if rule == "raster-bands":
        return [Scaling(0.0, float(_band(item, k).get("scale", 1.0)),
                        float(_band(item, k).get("offset", 0.0))) for k in keys]
    shift = 0.0 if _carries_boa_offset(item, rule, source) else -S2_BOA_ADD_OFFSET
    out = []
    for k in keys:
        scale = float(_band(item, k).get("scale", 1 / S2_QUANTIFICATION)) if rule == "earth-search-v1" \
            else 1 / S2_QUANTIFICATION
        out.append(Scaling(shift, scale, S2_BOA_ADD_OFFSET / S2_QUANTIFICATION))
    return out
