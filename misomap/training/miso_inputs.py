"""MISO's inputs: the encoders' cube bands opened lazily, pretrained checkpoints, the config completed
from them (band statistics, location bounds), the model built with its weights, and the pedons as points."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from misomap.core.config_base import StorageConfig
from misomap.core.errors import MisomapError
from misomap.core.storage import Target
from misomap.cube.crops import LazyBands, band_mean_std, open_bands
from misomap.cube.grid import Grid
from misomap.cube.reader import cube_data, cube_grid, open_cube
from misomap.models.miso.config import SOIL_ORDERS, EncoderConfig, MisoConfig
from misomap.models.miso.crops import Points
from misomap.models.miso.model import MisoModel
from misomap.models.miso.weights import Checkpoint, load_encoder_weights, read_checkpoint

log = logging.getLogger(__name__)

ENCODERS = ("imagery", "covariates")


class MisoJobError(MisomapError):
    """The MISO job cannot run: a missing band, label column, fold scheme or output."""

@dataclass(frozen=True)
class CubeArrays:
    """The encoders' bands of the cube (band, y, x), NaN = nodata: lazy chunk-cached readers, so
    training memory does not grow with the cube (in-memory arrays work too)."""

    imagery: LazyBands | np.ndarray
    covariates: LazyBands | np.ndarray | None
    grid: Grid


def load_arrays(location: str, storage: StorageConfig, cfg: MisoConfig) -> CubeArrays:
    """Open the imagery and covariate bands of the cube lazily (crops read chunk by chunk, cached)."""
    data = cube_data(open_cube(location, storage), location)
    names = [str(b) for b in data["band"].values]

    def read(enc: EncoderConfig | None, which: str) -> LazyBands | None:
        if enc is None:
            return None
        missing = [b for b in enc.bands if b not in names]
        if missing:
            raise MisoJobError(f"cube {location} lacks the {which} band(s) {missing}; it has {names}")
        log.info("opening %d %s bands of %s lazily", len(enc.bands), which, location)
        return open_bands(location, storage, list(enc.bands), cfg.train.cube_cache_mb * 2**20)

    return CubeArrays(read(cfg.imagery, "imagery"), read(cfg.covariates, "covariates"), cube_grid(data))

def read_weights(cfg: MisoConfig, storage: StorageConfig) -> dict[str, Checkpoint]:
    """Pretrained checkpoints named in the config, read from local paths or s3://."""
    out = {}
    for which in ENCODERS:
        enc = getattr(cfg, which)
        if enc is not None and enc.weights is not None:
            out[which] = read_checkpoint(Target(enc.weights.path, storage).read_bytes(), enc.weights.path)
    return out

def resolve_config(cfg: MisoConfig, arrays: CubeArrays, ckpts: dict[str, Checkpoint]) -> MisoConfig:
    """Fill what the config leaves open: per-band mean/std (the checkpoint's, else the cube's) and
    the location bounds (the cube's), so checkpoints carry a complete, self-describing config."""
    update: dict = {}
    for which in ENCODERS:
        enc: EncoderConfig | None = getattr(cfg, which)
        if enc is None or (enc.mean is not None and enc.std is not None):
            continue
        meta = ckpts[which].metadata if which in ckpts else {}
        if "mean" in meta and json.loads(meta.get("bands", "null")) == enc.bands:
            mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
        else:
            arr = arrays.imagery if which == "imagery" else arrays.covariates
            mean, std = (v.astype(float) for v in band_mean_std(arr))
            bad = [b for b, m in zip(enc.bands, mean) if not np.isfinite(m)]
            if bad:
                raise MisoJobError(f"{which} band(s) {bad} are nodata everywhere in the cube")
            mean, std = mean.tolist(), np.where(std > 0, std, 1.0).tolist()
        update[which] = enc.model_copy(update={"mean": [float(v) for v in mean],
                                               "std": [float(v) for v in std]})
    if cfg.location.bounds is None:
        update["location"] = cfg.location.model_copy(update={"bounds": arrays.grid.bounds})
    return MisoConfig.model_validate({**cfg.model_dump(), **{k: v.model_dump() for k, v in update.items()}})

BIG = 1e30
"""A clamp bound that clamps nothing (a band with no value at any training pedon)."""


def clip_to_pedons(cfg: MisoConfig, rows: pd.DataFrame) -> MisoConfig:
    """`cfg` with the clamp bounds of every `clip: training` encoder set to the range of its bands'
    values at `rows` (the pedons a model trains on: the training table holds each pedon's pixel)."""
    update = {}
    for which in ENCODERS:
        enc: EncoderConfig | None = getattr(cfg, which)
        if enc is None or enc.clip != "training":
            continue
        missing = [b for b in enc.bands if b not in rows.columns]
        if missing:
            raise MisoJobError(f"{which}.clip is 'training' but the training table lacks band(s) {missing}")
        values = rows[list(enc.bands)].to_numpy(np.float64)
        values[~np.isfinite(values)] = np.nan
        seen = ~np.isnan(values).all(axis=0)
        low, high = np.full(len(enc.bands), -BIG), np.full(len(enc.bands), BIG)
        low[seen], high[seen] = np.nanmin(values[:, seen], axis=0), np.nanmax(values[:, seen], axis=0)
        update[which] = enc.model_copy(update={"low": low.tolist(), "high": high.tolist()})
    return cfg.model_copy(update=update) if update else cfg


def build_model(cfg: MisoConfig, grid: Grid, ckpts: dict[str, Checkpoint]) -> MisoModel:
    """A MISO model with the configured pretrained encoder weights loaded."""
    model = MisoModel(cfg, grid.bounds)
    for which, ckpt in ckpts.items():
        enc_cfg: EncoderConfig = getattr(cfg, which)
        encoder = model.img_encoder if which == "imagery" else model.cov_encoder
        load_encoder_weights(encoder, ckpt, enc_cfg.weights, enc_cfg.bands)
    return model

def label_points(table: pd.DataFrame) -> Points:
    """Pedons as Points: permafrost 0/1 and soil-order index, -1 where unlabelled."""
    pf = pd.to_numeric(table["permafrost"], errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    codes = {name: i for i, name in enumerate(SOIL_ORDERS)}
    so = table["soil_order"].map(codes).fillna(-1).astype(np.int64).to_numpy()
    return Points(table["x"].to_numpy(np.float64), table["y"].to_numpy(np.float64), pf, so)
