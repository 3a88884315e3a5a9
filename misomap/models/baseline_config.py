"""Configuration of the Random Forest baseline (pydantic only, so loading a run configuration
stays fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from misomap.core.config_base import StrictModel


class RFConfig(StrictModel):
    """Hyperparameters and feature choice of the Random Forest baseline."""

    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    max_features: Literal["sqrt", "log2"] | float = "sqrt"
    radar: bool = Field(True, description="use s1_* bands when the cube has them")
    use_xy: bool = Field(False, description="add the EPSG:3338 x/y coordinates as features")
    n_jobs: int = Field(1, description="trees fitted/applied in parallel (-1 = every core)")
