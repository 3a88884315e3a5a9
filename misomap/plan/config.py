"""The `plan:` section: which tiles a run covers and the measured rates its cost estimate uses."""

from __future__ import annotations

from pydantic import Field

from misomap.core.config_base import StrictModel


class RatesConfig(StrictModel):
    """Measured throughputs per CPU core (README benchmark table, 2 shared cores, no GPU).

    Defaults: MISO dense 7,784 px/s and RF 150,407 px/s (`bench/bench_map.py`, "map: px/s per core");
    the cube 324,000 pixel-bands/s, from `bench/bench_cube.py`'s chunk-by-chunk read of 320² px x
    9 bands in 1.42 s on 2 cores (reading only, so an optimistic bound for building).
    """

    cube_px_bands_per_s_core: float = Field(324_000.0, gt=0)
    miso_px_per_s_core: float = Field(7_784.0, gt=0)
    rf_px_per_s_core: float = Field(150_407.0, gt=0)
    miso_px_per_s_gpu: float | None = Field(None, gt=0, description="not measured yet (no GPU here)")


class PlanConfig(StrictModel):
    """Tiles of the run (None: every land tile the cube's grid touches) and the cost rates."""

    tiles: tuple[str, ...] | None = None
    rates: RatesConfig = RatesConfig()
