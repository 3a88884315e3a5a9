"""`misomap import-pedons`: the pedon tables a user holds (Lab Data Mart, MISO reference, any table
through a column map) → `labels.pedons` in the project's GeoParquet layout, keeping only pedons on the
run's grid, with `<name>.report.csv` beside it listing every dropped or changed row and why."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from misomap.config import RunConfig
from misomap.core.storage import Target
from misomap.cube.build import planned_grid
from misomap.labels.importers import Candidates, clean, parse_columns, read_kssl, read_mapped, read_miso
from misomap.labels.pedons import LabelsError, write_parquet

log = logging.getLogger(__name__)
LAYOUTS = ("kssl", "miso", "table")


@dataclass(frozen=True)
class ImportSummary:
    """Where the pedons and the report went, and the counts behind them."""

    out: str
    report: str
    read: int
    kept: int
    dropped: int
    changed: int
    permafrost: int
    soil_order: int


def report_location(out: str) -> str:
    """`<out>` with `.parquet` replaced by `.report.csv`."""
    return out.removesuffix(".parquet") + ".report.csv"


def run_import_pedons(config: RunConfig, files: list[str], layout: str, columns: str | None = None,
                      crs: str | None = None, out: str | None = None) -> ImportSummary:
    """Read, check and write; an existing output is replaced only if an import made it (its report is
    beside it)."""
    if layout not in LAYOUTS:
        raise LabelsError(f"--layout {layout!r}: one of {LAYOUTS}")
    target = out or config.labels.location("pedons")
    if not target:
        raise LabelsError("no output: pass --out or set labels.pedons in the run configuration")
    report_loc = report_location(target)
    storage = config.storage
    if Target(target, storage).exists() and not Target(report_loc, storage).exists():
        raise LabelsError(f"{target} exists and was not written by import-pedons (no {report_loc}): "
                          "pick another --out or move it away")
    if layout == "kssl":
        cands: Candidates = read_kssl(files)
    elif layout == "miso":
        cands = read_miso(files)
    else:
        cands = read_mapped(files, parse_columns(columns), crs)
    if crs and layout != "table":
        cands.crs = crs
    area, area_crs = None, "EPSG:3338"
    if config.cube is not None:
        grid = planned_grid(config.cube)
        area, area_crs = grid.bounds, grid.crs
    else:
        log.warning("the run configuration has no cube section: pedons are not restricted to an area")
    result = clean(cands, area, area_crs)
    if result.pedons.empty:
        raise LabelsError(f"no pedon of {files} is left after the checks (see the reasons: "
                          f"{result.report['reason'].value_counts().head(3).to_dict()})")
    write_parquet(target, result.pedons, storage)
    buf = io.StringIO()
    result.report.to_csv(buf, index=False)
    Target(report_loc, storage).write_bytes(buf.getvalue().encode())
    actions = result.report["action"].value_counts()
    for reason, n in result.report["reason"].str.split(":").str[0].value_counts().items():
        log.info("import-pedons: %d row(s): %s", n, reason)
    p = result.pedons
    return ImportSummary(target, report_loc, result.read, len(p), int(actions.get("dropped", 0)),
                         int(actions.get("changed", 0)), int(p["permafrost"].notna().sum()),
                         int(p["soil_order"].notna().sum()))
