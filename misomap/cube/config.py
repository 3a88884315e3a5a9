"""The `cube:` section of the run configuration: where to search, what to stack, how to composite.

Real catalogs need nothing but configuration: each source names its collection and maps the
cube's band names to that catalog's asset keys (Earth Search `red`, Planetary Computer `B04`).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from misomap.core.config_base import Location, StrictModel
from misomap.cube.scaling import ScalingRule

AREAS: dict[str, tuple[float, float, float, float]] = {
    "alaska": (-170.0, 51.0, -129.0, 71.5),
    "fairbanks": (-148.2, 64.7, -147.4, 65.0),
    "tanana-flats": (-148.5, 64.2, -147.0, 64.75),
    "utqiagvik": (-157.0, 71.15, -156.5, 71.35),
}
"""Named areas (lon/lat bounding boxes) a run may ask for instead of a bbox."""

_MMDD = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_BAND = re.compile(r"^[a-z][a-z0-9_]*$")


def _parse_instant(part: str, whole: str) -> datetime | None:
    """One end of a STAC datetime range (date or RFC 3339), None for an open end ('..' or empty)."""
    if part in ("", ".."):
        return None
    try:
        if len(part) == 10:
            d = date.fromisoformat(part)
            return datetime(d.year, d.month, d.day)
        return datetime.fromisoformat(part.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"datetime {whole!r}: {part!r} is not a date (YYYY-MM-DD) or RFC 3339 time") from None


_DOMAIN_MARGIN_DEG = 10.0
"""How far (degrees) grid bounds may reach beyond the CRS's published area of use."""


def _check_bounds(bounds: tuple[float, float, float, float], crs: str, resolution: float) -> None:
    """Bounds ordered, at least one pixel wide, and inside the CRS's valid domain."""
    from pyproj import CRS, Transformer

    xmin, ymin, xmax, ymax = bounds
    if not all(math.isfinite(c) for c in bounds):
        raise ValueError(f"bounds {list(bounds)} has a non-finite value")
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"bounds {list(bounds)} are not ordered (xmin, ymin, xmax, ymax) with xmin < xmax "
                         "and ymin < ymax")
    if min(xmax - xmin, ymax - ymin) < resolution:
        raise ValueError(f"bounds {list(bounds)} are smaller than one {resolution} m pixel")
    proj = CRS.from_user_input(crs)
    lon_lat = Transformer.from_crs(proj, "EPSG:4326", always_xy=True).transform_bounds(
        *bounds, densify_pts=5)
    area = proj.area_of_use
    inside = all(math.isfinite(c) for c in lon_lat) and abs(lon_lat[1]) <= 90 and abs(lon_lat[3]) <= 90
    if inside and area is not None:
        m = _DOMAIN_MARGIN_DEG
        lats_ok = all(area.south - m <= lat <= area.north + m for lat in lon_lat[1::2])
        if area.west <= area.east:
            lons_ok = all(area.west - m <= lon <= area.east + m for lon in lon_lat[0::2])
        else:  # the area of use crosses the antimeridian (e.g. Alaska)
            lons_ok = all(lon >= area.west - m or lon <= area.east + m for lon in lon_lat[0::2])
        inside = lats_ok and lons_ok
    if not inside:
        where = f" ({area.name} {area.west}..{area.east} E, {area.south}..{area.north} N)" if area else ""
        raise ValueError(f"bounds {list(bounds)} fall outside the domain of {crs}{where}: give bounds in "
                         "that CRS's metres, or use bbox (lon/lat)")


class SeasonWindow(StrictModel):
    """A day-of-year window, every year of the datetime range (e.g. mid-summer 06-15..08-15)."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _mmdd(cls, v: str) -> str:
        if not _MMDD.match(v):
            raise ValueError(f"season bounds are 'MM-DD', got {v!r}")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> SeasonWindow:
        if self.end < self.start:
            raise ValueError(f"season end {self.end} is before its start {self.start} (windows may not "
                             "wrap the new year)")
        return self

    def contains(self, mmdd: str) -> bool:
        """True when a 'MM-DD' date falls inside the window (inclusive)."""
        return self.start <= mmdd <= self.end


class SourceConfig(StrictModel):
    """One STAC collection and how it becomes cube bands."""

    collection: str
    kind: Literal["optical", "radar", "static"]
    bands: dict[str, str]
    """cube band name -> asset key in this catalog (e.g. {red: B04} on Planetary Computer)."""
    prefix: str = ""
    """Band-name prefix for seasonal sources (`s2` -> `s2_summer_red`); unused for static ones."""
    mask_asset: str | None = None
    """Scene-classification asset (optical only), e.g. `scl` (Earth Search) or `SCL` (PC)."""
    mask_classes: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
    """SCL classes dropped: nodata, saturated, cloud shadow, cloud medium/high, cirrus, snow."""
    method: Literal["median", "geomedian"] = "median"
    """Optical compositing; radar always averages in dB, static sources are mosaicked."""
    max_cloud_cover: float | None = None
    resampling: Literal["nearest", "bilinear"] = "nearest"
    scaling: ScalingRule = "auto"
    """How digital numbers become values (misomap/cube/scaling.py, docs/contracts.md §1):
    `earth-search-v1`, `planetary-computer-s2`, `raster-bands`, or `auto` (per item, from its
    metadata; items whose convention cannot be told are refused by name)."""

    @field_validator("bands")
    @classmethod
    def _band_names(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("a source needs at least one band")
        bad = [k for k in v if not _BAND.match(k)]
        if bad:
            raise ValueError(f"band names must be lowercase identifiers, got {bad}")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceConfig:
        if self.kind != "static" and not self.prefix:
            raise ValueError(f"source {self.collection!r}: seasonal sources need a `prefix` (e.g. s2)")
        if self.mask_asset and self.kind != "optical":
            raise ValueError(f"source {self.collection!r}: `mask_asset` applies to optical sources only")
        return self


class CubeConfig(StrictModel):
    """Search, grid, compositing and output of one datacube build."""

    out: Location
    sources: tuple[SourceConfig, ...]
    datetime: str
    """STAC datetime range, e.g. `2019-01-01/2023-12-31`."""
    seasons: dict[str, SeasonWindow] = {"summer": SeasonWindow(start="06-15", end="08-15")}
    bbox: tuple[float, float, float, float] | None = None
    """lon/lat (west, south, east, north)."""
    area: str | None = None
    """A name from `AREAS`, instead of `bbox` or `bounds`."""
    bounds: tuple[float, float, float, float] | None = None
    """Grid bounds in `crs` (xmin, ymin, xmax, ymax), e.g. the demo world's suggested grid."""
    crs: str = "EPSG:3338"
    resolution: float = Field(10.0, gt=0)
    chunk: int = 1024
    """Chunk side in pixels; chunks hold all bands, so one read gives a model every input of a
    window; 1024 x 1024 x 21 float32 is ~84 MiB raw before zstd, few enough S3 objects statewide.
    Build memory per worker is about scenes x assets x chunk^2 x 4 B (~1 GB for 23 scenes x 10 assets
    at 1024): lower `chunk` or `workers` on small machines. It grows with the chunk, never the region."""
    zarr_format: Literal[2, 3] = 3
    zstd_level: int = Field(3, ge=1, le=22)
    sign: str | None = None
    """`module:function` that takes a pystac Item and returns it with signed asset hrefs
    (e.g. `planetary_computer:sign`)."""
    workers: int = Field(2, ge=1)
    """Chunks built at once (dask threads)."""
    quicklook_bands: tuple[str, str, str] | None = None
    """Three cube bands shown as RGB in the quicklook; default: the first optical source's red,
    green, blue if mapped, else the first band."""

    @field_validator("datetime")
    @classmethod
    def _range(cls, v: str) -> str:
        if v.count("/") != 1:
            raise ValueError(f"datetime must be a 'start/end' range, got {v!r}")
        ends = [_parse_instant(part, v) for part in v.split("/")]
        if None not in ends and ends[1] < ends[0]:  # type: ignore[operator]
            raise ValueError(f"datetime range {v!r} ends before it starts")
        return v

    @field_validator("crs")
    @classmethod
    def _crs(cls, v: str) -> str:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_user_input(v)
        except CRSError:
            raise ValueError(f"crs {v!r} is not a CRS pyproj knows (e.g. 'EPSG:3338')") from None
        if not crs.is_projected:
            raise ValueError(f"crs {v!r} is not projected: the cube grid is in metres (e.g. 'EPSG:3338')")
        return v

    @field_validator("bbox")
    @classmethod
    def _lonlat(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is None:
            return v
        west, south, east, north = v
        if not all(math.isfinite(c) for c in v):
            raise ValueError(f"bbox {list(v)} has a non-finite value")
        if not (-180 <= west < east <= 180):
            raise ValueError(f"bbox {list(v)}: need -180 <= west < east <= 180 (lon/lat degrees)")
        if not (-90 <= south < north <= 90):
            raise ValueError(f"bbox {list(v)}: need -90 <= south < north <= 90 (lon/lat degrees)")
        return v

    @model_validator(mode="after")
    def _one_area(self) -> CubeConfig:
        given = [n for n in ("bbox", "area", "bounds") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of bbox, area, bounds (got {given or 'none'})")
        if self.area is not None and self.area not in AREAS:
            raise ValueError(f"unknown area {self.area!r}; known: {sorted(AREAS)}")
        if self.bounds is not None:
            _check_bounds(self.bounds, self.crs, self.resolution)
        if self.chunk < 16:
            raise ValueError(f"chunk must be at least 16 pixels, got {self.chunk}")
        if not self.sources:
            raise ValueError("no sources configured")
        if self.sign is not None and ":" not in self.sign:
            raise ValueError(f"sign must be 'module:function', got {self.sign!r}")
        names = self.band_names()
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate cube band names {names}: give sources distinct prefixes/bands")
        if self.quicklook_bands and set(self.quicklook_bands) - set(names):
            raise ValueError(f"quicklook_bands {sorted(set(self.quicklook_bands) - set(names))} are not "
                             f"cube bands; cube bands: {names}")
        return self

    def band_names(self) -> list[str]:
        """The cube's band coordinate (docs/contracts.md §2): seasonal sources by season, then static."""
        names = []
        for src in self.sources:
            if src.kind == "static":
                names += list(src.bands)
                continue
            suffix = "_db" if src.kind == "radar" else ""
            names += [f"{src.prefix}_{season}_{b}{suffix}" for season in self.seasons for b in src.bands]
        return names

    def rgb_bands(self) -> tuple[str, str, str]:
        """The quicklook's bands: as configured, else the first optical source's red/green/blue."""
        if self.quicklook_bands:
            return self.quicklook_bands
        season = next(iter(self.seasons))
        for src in self.sources:
            if src.kind == "optical" and {"red", "green", "blue"} <= set(src.bands):
                return tuple(f"{src.prefix}_{season}_{b}" for b in ("red", "green", "blue"))  # type: ignore[return-value]
        first = self.band_names()[0]
        return (first, first, first)
