"""The commented run configuration `misomap init` writes for a real area and a public catalog.

Values are written as JSON scalars/lists (valid YAML flow style), so the text needs no YAML library
that keeps comments; `misomap.jobs.init` validates the result against the run configuration before
writing it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal

from misomap.plan.area import AreaGrid

Catalog = Literal["earth-search", "planetary-computer"]

CATALOG_URLS: dict[str, str] = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
}
S2_NAMES = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
"""The cube's Sentinel-2 band names (Earth Search asset keys), the reference's nine bands."""
PC_S2_KEYS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
"""The same bands under the Planetary Computer's asset keys (ESA band numbers)."""
SCENES_PER_SUMMER = 15
"""Sentinel-2 observations of one MGRS tile in a 06-15..08-15 window (two satellites, 5-day revisit,
tile overlaps), used to size build memory."""
ASSETS = 10
"""Assets read per scene (nine bands + the SCL mask)."""


@dataclass(frozen=True)
class Machine:
    """What the sizing sees: CPU cores and memory (bytes) of the machine running `init`."""

    cores: int
    memory: int

    @classmethod
    def here(cls) -> Machine:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return cls(max(cores, 1), int(memory))


@dataclass(frozen=True)
class Sizing:
    """Chunk side and build workers chosen for a machine, with the estimate behind them."""

    chunk: int
    workers: int
    worker_bytes: int


def size_for(machine: Machine, years: int, chunk: int | None = None) -> Sizing:
    """The largest chunk (1024, 512, 256 px; or `chunk` if given) whose build fits a quarter of memory
    with one worker, then as many workers (≤ cores) as half the memory holds. Per worker: scenes x assets x chunk² x
    4 B (cube/config.py's estimate), scenes = SCENES_PER_SUMMER per year."""
    scenes = SCENES_PER_SUMMER * years
    for side in (chunk,) if chunk else (1024, 512, 256):
        per = scenes * ASSETS * side * side * 4
        if per <= machine.memory / 4 or side == 256:
            break
    workers = max(1, min(machine.cores, int(machine.memory / 2 // per)))
    return Sizing(side, workers, per)


def _j(value: Any) -> str:
    return json.dumps(value)


def _sources(catalog: Catalog) -> str:
    if catalog == "earth-search":
        s2 = {b: b for b in S2_NAMES}
        return f"""    # Sentinel-2 L2A, Earth Search v1 asset keys. Scaling `earth-search-v1`: pixels carry the +1000
    # DN offset only where s2:processing_baseline >= 04.00 and earthsearch:boa_offset_applied is not
    # true; the published raster:bands offset -0.1 is not trusted (docs/contracts.md section 1).
    - collection: sentinel-2-l2a
      kind: optical
      prefix: s2
      bands: {_j(s2)}
      mask_asset: scl        # scene classification; classes dropped below: nodata, saturated,
      mask_classes: [0, 1, 3, 8, 9, 10, 11]  # cloud shadow, cloud medium/high, cirrus, snow
      scaling: earth-search-v1
      max_cloud_cover: 80    # eo:cloud_cover (%) above which a scene is not read at all
    # Sentinel-1 RTC is not on Earth Search (it serves sentinel-1-grd, not terrain corrected): use
    # `--catalog planetary-computer` for radar bands. The RF and MISO run without them.
    # Copernicus DEM GLO-30 (Earth Search `cop-dem-glo-30`, asset `data`, metres): elevation only; the
    # cube does not derive slope/aspect/curvature.
    - collection: cop-dem-glo-30
      kind: static
      bands: {{"elevation": "data"}}
      scaling: raster-bands
      resampling: bilinear
"""
    s2 = dict(zip(S2_NAMES, PC_S2_KEYS))
    return f"""    # Sentinel-2 L2A, Planetary Computer asset keys (ESA band numbers). Scaling
    # `planetary-computer-s2`: ESA's pixels unchanged (+1000 DN from processing baseline 04.00 on),
    # no raster:bands scale/offset published (docs/contracts.md section 1).
    - collection: sentinel-2-l2a
      kind: optical
      prefix: s2
      bands: {_j(s2)}
      mask_asset: SCL        # scene classification; classes dropped below: nodata, saturated,
      mask_classes: [0, 1, 3, 8, 9, 10, 11]  # cloud shadow, cloud medium/high, cirrus, snow
      scaling: planetary-computer-s2
      max_cloud_cover: 80    # eo:cloud_cover (%) above which a scene is not read at all
    # Sentinel-1 RTC (float32 linear gamma0, nodata -32768 in raster:bands), averaged in dB per season.
    - collection: sentinel-1-rtc
      kind: radar
      prefix: s1
      bands: {{"vv": "vv", "vh": "vh"}}
      scaling: raster-bands
    # Copernicus DEM GLO-30 (asset `data`, metres): elevation only; the cube does not derive
    # slope/aspect/curvature.
    - collection: cop-dem-glo-30
      kind: static
      bands: {{"elevation": "data"}}
      scaling: raster-bands
      resampling: bilinear
"""


CLIMATE_NOTE = """    # Climate covariates (the reference uses annual precipitation, summer warmth and January minimum
    # temperature) come from a raster you supply, e.g. SNAP's "Historical Monthly and Derived
    # Temperature/Precipitation Products - 771 m CRU TS" for Alaska (Scenarios Network for Alaska and
    # Arctic Planning, University of Alaska Fairbanks, https://catalog.snap.uaf.edu). The cube reads
    # sources through the one STAC API in `stac.url`, so a climate raster must be an item of a
    # collection that API serves (e.g. a local mirror run with `rustac serve`), then add:
    # - collection: ak-climate
    #   kind: static
    #   bands: {"precip_annual": "precip_annual", "summer_warmth": "summer_warmth", "jan_min_temp": "jan_min_temp"}
    #   scaling: raster-bands
    #   resampling: bilinear
"""


def _miso(catalog: Catalog) -> str:
    imagery = [f"s2_summer_{b}" for b in S2_NAMES]
    if catalog == "planetary-computer":
        imagery += ["s1_summer_vv_db", "s1_summer_vh_db"]
    return f"""miso:   # MISO sized for CPUs: `misomap train-miso -c THIS --map`; on a GPU raise train.* and crops.size_px
  imagery: {{bands: {_j(imagery)}, depths: [1, 1], num_heads: [1, 2]}}
  covariates: {{bands: ["elevation"], depths: [1, 1], num_heads: [1, 2]}}   # add the climate bands here too
  crops: {{size_px: 32, jitter_px: 8, label_slots: 12, pseudo_points: 2, grid: 2}}
  train: {{epochs: 4, steps_per_epoch: 10, batch_size: 16, lr: 0.002, patience: 2, warmup_epochs: 1}}
  schemes: null     # every scheme of folds.parquet (those whose pedons cannot be split are skipped)
  max_folds: 1      # the largest test fold of each scheme; null cross-validates every fold
  final_model: true # the model the MISO map uses, trained on every labelled pedon
"""


def render(grid: AreaGrid, catalog: Catalog, years: tuple[int, int], workdir: str, stac_url: str | None,
           sizing: Sizing, machine: Machine, name: str) -> str:
    """The whole commented run configuration (YAML text) for an area and a catalog."""
    url = stac_url or CATALOG_URLS[catalog]
    public = stac_url is None or stac_url == CATALOG_URLS[catalog]
    sign = ("  sign: planetary_computer:sign   # signs asset hrefs (pip install planetary-computer)\n"
            if catalog == "planetary-computer" and public else
            "  # sign: planetary_computer:sign  # needed on the public Planetary Computer only\n"
            if catalog == "planetary-computer" else "")
    w, s, e, n = grid.bbox
    if grid.alaska:
        where = (f"  # EPSG:3338 (Alaska Albers equal area), edges on the statewide plan's {grid.chunk}-px chunk "
                 f"lattice,\n  # so these chunks are the statewide run's; land tiles: "
                 f"{', '.join(t.id for t in grid.tiles[:6])}{' ...' if len(grid.tiles) > 6 else ''}\n")
    else:
        where = (f"  # Outside Alaska: the area's UTM zone ({grid.crs}), not the statewide EPSG:3338 tile plan;\n"
                 "  # `misomap plan` and the training table (labels in EPSG:3338, docs/contracts.md) need\n"
                 "  # an Alaska grid, so this config serves `cube build` only.\n")
    remote = workdir.startswith("s3://")
    storage = ("storage:              # S3 credentials come from the environment / AWS chain, never from here\n"
               "  region: us-west-2    # set to your bucket's region\n"
               "  # endpoint_url: https://...   # only for non-AWS S3 (MinIO, SeaweedFS, ...)\n"
               if remote else
               "storage: {}           # local folders; for s3:// outputs set region/endpoint_url here\n")
    gib = machine.memory / 2**30
    return f"""# misomap run configuration written by `misomap init` for lon/lat area [{w:g}, {s:g}, {e:g}, {n:g}]
# on the {catalog} STAC catalog. Check it with `misomap config-check -c THIS` and its cost with
# `misomap plan -c THIS`; then `misomap import-pedons ... -c THIS`, `misomap cube build -c THIS`,
# `misomap train-rf -c THIS`, `misomap predict -c THIS`.
name: {_j(name)}
workdir: {_j(workdir)}   # cube, training table, models, reports and maps go under here
seed: 0
{storage}stac:
  url: {_j(url)}
  timeout_s: 60
  max_retries: 5
cube:
  out: {_j(workdir + "/cube.zarr")}
{where}  crs: {_j(grid.crs)}
  resolution: {grid.resolution:g}
  bounds: {_j([round(v, 3) for v in grid.bounds])}
  datetime: "{years[0]}-01-01/{years[1]}-12-31"
  seasons:
    summer: {{start: "06-15", end: "08-15"}}   # snow-free, leaf-on composite window each year
  # Sized for this machine ({machine.cores} cores, {gib:.0f} GiB): one build worker holds about
  # {SCENES_PER_SUMMER} scenes/summer x {years[1] - years[0] + 1} years x {ASSETS} assets x chunk² x 4 B = \
{sizing.worker_bytes / 2**30:.1f} GiB.
  chunk: {sizing.chunk}
  workers: {sizing.workers}
{sign}  sources:
{_sources(catalog)}{CLIMATE_NOTE}labels:
  pedons: {_j(workdir + "/labels/pedons.parquet")}   # written by `misomap import-pedons`
  cube: {_j(workdir + "/cube.zarr")}
  window: 1
folds:
  k: 5
  dbscan_eps_m: [1000, 10000]   # the reference's spatial clusters: 1 km and 10 km
  block_size_m: 20000
  regions: false    # no MLRA polygons given (labels.regions)
  zones: false      # no permafrost-zone polygons given (labels.zones)
rf:
  n_estimators: 100
  n_jobs: 1         # trees fitted in parallel; the map's workers already run one chunk per core
map:
  cube: {_j(workdir + "/cube.zarr")}
  output: {_j(workdir + "/maps/rf")}
  model: rf
  model_path: {_j(workdir + "/models/rf")}
  chunk_px: 512
  workers: {sizing.workers}
{_miso(catalog)}"""
