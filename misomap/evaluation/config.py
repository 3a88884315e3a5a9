"""Configuration of the label files / training-table sampling and of the evaluation report
(pydantic only, so loading a run configuration stays fast)."""

from __future__ import annotations

from typing import Literal

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


class EvaluationConfig(StrictModel):
    """The rules every model is trained and judged under, and how the report breaks figures down."""

    distance_bins_km: tuple[float, ...] = Field((1.0, 10.0), description="near/remote edges (km)")
    threshold: float = Field(0.5, gt=0, lt=1, description="P(permafrost) above which it is called")
    min_group: int = Field(5, ge=1, description="smallest region/zone/distance group reported")
    class_weighting: Literal["none", "balanced", "threshold"] = Field(
        "threshold", description="one class-weighting rule for every model: none, balanced (class-"
        "weighted training) or threshold (decision offsets fitted on validation; misomap.models.weighting)")
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of each fold's training pedons "
                                "carved (as whole spatial patches) into validation, for every model")
    reliability_bins: int = Field(10, ge=2, description="probability bins of the reliability diagrams")

    @field_validator("distance_bins_km")
    @classmethod
    def _increasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(b <= a for a, b in zip(v, v[1:])) or v[0] <= 0:
            raise ValueError(f"distance bins must be positive and increasing, got {v}")
        return v
