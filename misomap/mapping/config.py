"""Configuration of the map job."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from misomap.core.config_base import Location, StrictModel


class AutoConfig(StrictModel):
    """How `model: auto` chooses the published model per target by nested spatial validation
    (misomap.training.auto): the inner folds of each test fold's training part, the candidates,
    and the scheme whose test folds' inner scores decide the map."""

    candidates: list[Literal["rf", "miso", "stack"]] = Field(
        default=["rf", "miso", "stack"], min_length=2,
        description="in order of preference on a tie; stack = logistic regression on both models' logits")
    scheme: str | None = Field(None, description="the scheme deciding the map; unset: miso.design.map_scheme "
                                                 "if set, else the first scheme MISO is cross-validated on")
    inner_folds: int = Field(2, ge=1, description="inner folds per test fold (the largest ones)")
    min_share: float = Field(0.05, gt=0, lt=1, description="an inner fold holds at least this share of the "
                                                           "training part")


class MapConfig(StrictModel):
    """Where to read the cube, which model to run, and what to write."""

    cube: Location
    output: Location
    model: str = Field("rf", description="'rf', 'miso', 'auto' (chosen per target by nested validation: "
                                         "`misomap choose-map`), or 'module:factory' for a custom predictor")
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
    auto: AutoConfig = AutoConfig()
