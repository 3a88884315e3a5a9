"""Configuration of the label files, the training-table sampling and the shared folds (pydantic
only, so loading a run configuration stays fast)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from misomap.core.config_base import Location, StrictModel


class LabelsConfig(StrictModel):
    """Where the labels are and how the cube is sampled at them for the training table."""

    world: Location | None = Field(None, description="demo-world folder; default parent of the "
                                                     "label files below")
    pedons: Location | None = None
    regions: Location | None = None
    zones: Location | None = None
    cube: Location | None = Field(None, description="cube to sample; default <workdir>/cube.zarr")
    window: int = Field(1, ge=1, description="odd window side (px); >1 adds window mean/sd columns")

    @model_validator(mode="after")
    def _check(self) -> LabelsConfig:
        if self.window % 2 == 0:
            raise ValueError(f"labels.window must be odd, got {self.window}")
        return self

    def location(self, which: str) -> str | None:
        """The configured file for `pedons`, `regions` or `zones`, else its place in `world`."""
        explicit = getattr(self, which)
        if explicit or not self.world:
            return explicit
        name = {"pedons": "pedons", "regions": "regions", "zones": "permafrost_zones"}[which]
        return f"{self.world}/labels/{name}.parquet"


class FoldsConfig(StrictModel):
    """Fold schemes and their parameters; the same seed gives the same folds.parquet."""

    k: int = Field(5, ge=2, description="folds for random, DBSCAN and block schemes")
    dbscan_eps_m: tuple[float, ...] = Field((1000.0, 10000.0), description="DBSCAN radii (metres)")
    block_size_m: float = Field(20000.0, gt=0, description="side of a square spatial block")
    regions: bool = True
    zones: bool = True

    @field_validator("dbscan_eps_m")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(e <= 0 for e in v):
            raise ValueError(f"DBSCAN radii must be > 0, got {v}")
        return v
