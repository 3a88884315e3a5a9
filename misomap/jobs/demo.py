"""The one-command demo: every pipeline stage that exists, in order, on the demo region."""

from __future__ import annotations

import logging
from pathlib import Path

from misomap.config import RunConfig
from misomap.doctor import run_checks

log = logging.getLogger(__name__)

MISSING_STAGES = (
    "demo world (issue: synthetic Alaska region as STAC + COGs)",
    "datacube build (issue: STAC -> composites -> Zarr v3)",
    "Random Forest + spatial cross-validation",
    "MISO training",
    "map job (Zarr + COG + STAC outputs)",
)


def run_demo(out: Path, config: RunConfig) -> list[str]:
    """Run the stages that exist, log the ones still missing, and return the missing list."""
    out.mkdir(parents=True, exist_ok=True)
    log.info("demo outputs go under %s", out.resolve())
    for check in run_checks(config):
        log.info("doctor: %-14s %s", check.name, check.detail)
    for stage in MISSING_STAGES:
        log.warning("not built yet, skipped: %s", stage)
    return list(MISSING_STAGES)
