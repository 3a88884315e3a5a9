"""Configuration of the evaluation report and of the rules every model is judged under (pydantic
only, so loading a run configuration stays fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from misomap.core.config_base import StrictModel


class EvaluationConfig(StrictModel):
    """The rules every model is trained and judged under, and how the report breaks figures down."""

    distance_bins_km: tuple[float, ...] = Field((1.0, 10.0), description="near/remote edges (km)")
    threshold: float = Field(0.5, gt=0, lt=1, description="P(permafrost) above which it is called")
    min_group: int = Field(5, ge=1, description="smallest region/zone/distance group reported")
    class_weighting: Literal["none", "balanced", "threshold"] = Field(
        "threshold", description="one class-weighting rule for every model: none, balanced (class-"
        "weighted training) or threshold (decision offsets fitted on validation; misomap.models.weighting)")
    class_balance: float = Field(0.0, ge=0, le=1, description="every model trains on its pedons "
                                 "weighted by their class's share of the task's labels to the power "
                                 "−class_balance (the RF's sample weights, MISO's per-label loss weights): 0 = as "
                                 "the labels fall, 0.5 = square-root balanced; misomap.models.weighting")
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of each fold's training pedons "
                                "carved (as whole spatial patches) into validation, for every model")
    reliability_bins: int = Field(10, ge=2, description="probability bins of the reliability diagrams")

    @model_validator(mode="after")
    def _one_balancing(self) -> EvaluationConfig:
        if self.class_balance and self.class_weighting == "balanced":
            raise ValueError(f"class_balance {self.class_balance} and class_weighting balanced would both "
                             "even out the classes: use one (class_balance with none or threshold)")
        return self

    @field_validator("distance_bins_km")
    @classmethod
    def _increasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(b <= a for a, b in zip(v, v[1:])) or v[0] <= 0:
            raise ValueError(f"distance bins must be positive and increasing, got {v}")
        return v
