"""Configuration of the shared cross-validation folds and the Random Forest baseline (pydantic
only, so loading a run configuration stays fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from misomap.core.config_base import StrictModel


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


class RFConfig(StrictModel):
    """Hyperparameters and feature choice of the Random Forest baseline."""

    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    max_features: Literal["sqrt", "log2"] | float = "sqrt"
    radar: bool = Field(True, description="use s1_* bands when the cube has them")
    use_xy: bool = Field(False, description="add the EPSG:3338 x/y coordinates as features")
    n_jobs: int = Field(1, description="trees fitted/applied in parallel (-1 = every core)")
