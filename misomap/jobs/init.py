"""`misomap init`: a complete, commented run configuration for a real area on a public STAC catalog.

Offline by default: the area, years and grid are checked here, and the catalog is searched at
`cube build` (which refuses an area with no items, naming the collection, bbox and dates, before any
chunk). `--check` runs that same search now, so a wrong area fails before anything else.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from misomap.config import RunConfig, config_from_dict
from misomap.core.errors import ConfigError
from misomap.cube.build import planned_grid, search_bbox
from misomap.cube.search import open_client, search_source
from misomap.plan.area import AreaGrid, area_grid, parse_area
from misomap.plan.template import CATALOG_URLS, Machine, Sizing, render, size_for

log = logging.getLogger(__name__)
FIRST_YEAR = 2015
"""Sentinel-2A's first full summer; Sentinel-1 RTC and Copernicus DEM cover it too."""
_YEARS = re.compile(r"^(\d{4})(?:-(\d{4}))?$")


@dataclass(frozen=True)
class InitResult:
    """What `init` wrote and the choices behind it."""

    out: Path
    grid: AreaGrid
    sizing: Sizing
    config: RunConfig
    searched: dict[str, int]
    """Items found per collection when `check` ran (empty otherwise)."""


def parse_years(text: str, today: date | None = None) -> tuple[int, int]:
    """`2019-2024` or `2021` as (first, last), both within Sentinel-2's record."""
    m = _YEARS.match(text.strip())
    if not m:
        raise ConfigError(f"--years {text!r}: give YYYY or YYYY-YYYY (e.g. 2019-2024)")
    first, last = int(m[1]), int(m[2] or m[1])
    this_year = (today or date.today()).year
    if first > last:
        raise ConfigError(f"--years {text!r}: {first} is after {last}")
    if first < FIRST_YEAR or last > this_year:
        raise ConfigError(f"--years {text!r}: Sentinel-2 summers run from {FIRST_YEAR} to {this_year}")
    return first, last


def check_catalog(config: RunConfig) -> dict[str, int]:
    """Search every source over the grid and dates now (what `cube build` does first); StacSearchError
    names the collection, bbox and dates of a source or season with no items."""
    cube = config.cube
    assert cube is not None and config.stac.url is not None  # written by render()
    client = open_client(config.stac.url, config.stac.timeout_s, config.stac.max_retries)
    bbox = search_bbox(planned_grid(cube))
    found = {}
    for src in cube.sources:
        items = search_source(client, config.stac.url, cube, src, bbox, None)
        found[src.collection] = len(items.item_ids())
        log.info("%s: %d items over %s in %s", src.collection, found[src.collection],
                 [round(v, 4) for v in bbox], "any date" if src.kind == "static" else cube.datetime)
    return found


def run_init(area: str, catalog: str, out: Path, resolution: float = 10.0, years: str = "2019-2024",
             workdir: str = "misomap-out", stac_url: str | None = None, name: str | None = None,
             check: bool = False, force: bool = False, machine: Machine | None = None,
             chunk: int | None = None) -> InitResult:
    """Check the inputs, size the run for this machine (or for `chunk` px chunks), render and validate the config, write it
    (never over an existing file unless `force`), and search the catalog if `check`."""
    if catalog not in CATALOG_URLS:
        raise ConfigError(f"--catalog {catalog!r}: one of {sorted(CATALOG_URLS)}")
    if resolution not in (10.0, 30.0):
        raise ConfigError(f"--resolution {resolution:g}: 10 (Sentinel-2's finest) or 30 (the DEM's)")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pick another --out or pass --force to replace it")
    bbox = parse_area(area)
    span = parse_years(years)
    machine = machine or Machine.here()
    sizing = size_for(machine, span[1] - span[0] + 1, chunk)
    grid = area_grid(bbox, resolution, sizing.chunk)
    run_name = name or f"misomap-{out.stem}"
    text = render(grid, catalog, span, workdir.rstrip("/"), stac_url, sizing, machine, run_name)  # type: ignore[arg-type]
    config = config_from_dict(yaml.safe_load(text), f"the configuration init renders for {out}")
    searched = check_catalog(config) if check else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    log.info("wrote %s: %s %g m grid %s (%d x %d px), chunk %d, %d workers", out, grid.crs, resolution,
             grid.bounds, planned_grid(config.cube).width, planned_grid(config.cube).height,  # type: ignore[arg-type]
             sizing.chunk, sizing.workers)
    return InitResult(out, grid, sizing, config, searched)
