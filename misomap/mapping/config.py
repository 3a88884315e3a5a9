"""Configuration of the map job."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from misomap.core.config_base import Location, StrictModel


class MapConfig(StrictModel):
    """Where to read the cube, which model to run, and what to write."""

    cube: Location
    output: Location
    model: str = Field("rf", description="'rf', 'miso', or 'module:factory' for a custom predictor")
    model_path: Location | None = None
    resolution: float | None = Field(None, gt=0, description="output resolution (m); the cube's if unset")
    chunk_px: int = Field(512, ge=16, le=8192)
    zarr_format: Literal[2, 3] = 3
    cogs: bool = True
    workers: int = Field(2, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(8192, ge=1)
    overlap: bool = Field(True, description="read the next chunk and write the last one while a chunk computes "
                                            "(a second thread per worker; same bytes)")
