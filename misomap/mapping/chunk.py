"""The map's chunk task: one output chunk predicted from its cube window (with the predictor's halo)
and written to the map store, a pure function of (region, MapSpec); plus the map's
locations, its output grid and its run hash."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from misomap.core.config_base import GatewayConfig, StorageConfig
from misomap.core.inputs import input_codes
from misomap.core.storage import Target
from misomap.cube.grid import ChunkWindow, Grid
from misomap.cube.reader import Window, cube_grid, open_cube_cached, read_window
from misomap.mapping.config import MapConfig
from misomap.mapping.layers import encode_layers
from misomap.mapping.predictors.api import MapPredictor, get_predictor
from misomap.mapping.store import write_chunk
from misomap.runtime.cluster import local_gpus
from misomap.runtime.runner import Executor, StagedTask

_READ_LOCK = threading.Lock()


def zarr_url(cfg: MapConfig) -> str:
    return f"{cfg.output}/map.zarr"


def progress_url(cfg: MapConfig) -> str:
    return f"{cfg.output}/_progress/map"


def output_grid(cfg: MapConfig, storage: StorageConfig) -> Grid:
    """The map grid: the cube's bounds at the configured (or the cube's) resolution."""
    cgrid = cube_grid(open_cube_cached(cfg.cube, storage))
    if cfg.resolution is None or cfg.resolution == cgrid.resolution:
        return cgrid
    return Grid.aligned(cgrid.crs, cfg.resolution, cgrid.bounds)


def context_bounds(cgrid: Grid, sub: Grid, predictor: MapPredictor) -> tuple[float, float, float, float]:
    """Bounds of the cube window for an output block: the block plus the predictor's halo,
    widened to multiples of its alignment on the cube's pixel grid."""
    r, a, halo = cgrid.resolution, predictor.align_px, predictor.halo_px
    col0 = math.floor((math.floor((sub.xmin - cgrid.xmin) / r + 1e-9) - halo) / a) * a
    col1 = math.ceil((math.ceil((sub.xmax - cgrid.xmin) / r - 1e-9) + halo) / a) * a
    row0 = math.floor((math.floor((cgrid.ymax - sub.ymax) / r + 1e-9) - halo) / a) * a
    row1 = math.ceil((math.ceil((cgrid.ymax - sub.ymin) / r - 1e-9) + halo) / a) * a
    return (cgrid.xmin + col0 * r, cgrid.ymax - row1 * r, cgrid.xmin + col1 * r, cgrid.ymax - row0 * r)


def inputs_at(window: np.ndarray, wx: np.ndarray, wy: np.ndarray, qx: np.ndarray, qy: np.ndarray,
              bands: tuple[str, ...] | list[str]) -> np.ndarray:
    """`inputs_used` codes (len(qy), len(qx)) of the output pixels: the input groups with data in the
    cube pixel under each pixel centre (window (band, y, x) with pixel centres wx, wy)."""
    res = float(wx[1] - wx[0]) if len(wx) > 1 else float(wy[0] - wy[1])
    cols = np.clip(np.floor((np.asarray(qx) - (wx[0] - res / 2)) / res).astype(int), 0, len(wx) - 1)
    rows = np.clip(np.floor(((wy[0] + res / 2) - np.asarray(qy)) / res).astype(int), 0, len(wy) - 1)
    return input_codes(window[:, rows][:, :, cols], bands)


@dataclass(frozen=True)
class MapSpec:
    """What every map chunk task needs: the map section and the storage section."""

    map: MapConfig
    storage: StorageConfig


def chunk_inputs(region: ChunkWindow, cfg: MapConfig, storage: StorageConfig
                 ) -> tuple[MapPredictor, Grid, Window]:
    """What a chunk task of any per-pixel product (map, embeddings) works from: the worker's
    predictor, the chunk's output grid and its cube window with the predictor's halo."""
    predictor = get_predictor(cfg, storage)
    sub = output_grid(cfg, storage).window(region.row0, region.col0, region.height, region.width)
    cube = open_cube_cached(cfg.cube, storage)
    # One read at a time per process: the lazy cube is computed with dask's synchronous scheduler,
    # so a read never submits tasks to the cluster it runs on, and a worker's reading and computing
    # threads never race for its client.
    with _READ_LOCK, dask.config.set(scheduler="synchronous"):
        window = read_window(cube, predictor.bands, context_bounds(cube_grid(cube), sub, predictor))
    return predictor, sub, window


@dataclass(frozen=True)
class _ChunkInput:
    """A chunk's cube window (with halo) and the output pixel centres it is asked at."""

    window: np.ndarray
    wx: np.ndarray
    wy: np.ndarray
    qx: np.ndarray
    qy: np.ndarray


def read_chunk(region: ChunkWindow, spec: MapSpec) -> _ChunkInput:
    """Read stage: the cube window an output chunk needs (the predictor's bands and halo)."""
    _, sub, window = chunk_inputs(region, spec.map, spec.storage)
    return _ChunkInput(window.values, window.x, window.y, sub.x_coords(), sub.y_coords())


def compute_chunk(region: ChunkWindow, spec: MapSpec, data: _ChunkInput) -> tuple[dict[str, np.ndarray], int]:
    """Compute stage: the model on the window, encoded as the map's uint8 layers (with the inputs
    each pixel used), and the count of valid pixels."""
    predictor = get_predictor(spec.map, spec.storage)
    probs = predictor.predict(data.window, data.wx, data.wy, data.qx, data.qy)
    used = inputs_at(data.window, data.wx, data.wy, data.qx, data.qy, predictor.bands)
    return encode_layers(probs, used), int(np.isfinite(probs.permafrost).sum())


def write_chunk_layers(region: ChunkWindow, spec: MapSpec, result: tuple[dict[str, np.ndarray], int]
                       ) -> dict[str, Any]:
    """Write stage: the layers into the map store; returns the chunk's completion record (what it
    wrote and its checksum)."""
    layers, valid = result
    write_chunk(Target(zarr_url(spec.map), spec.storage), region, layers)
    return {"key": region.key, "valid_pixels": valid, "layers": list(layers),
            "sha256": hashlib.sha256(b"".join(v.tobytes() for v in layers.values())).hexdigest()}


predict_chunk = StagedTask(read_chunk, compute_chunk, write_chunk_layers)
"""Predict one output chunk and write it; a pure function of (region, spec) returning the chunk's
completion record. In stages, so the chunk engine reads the next chunk while one computes."""


def map_executor(cfg: MapConfig, gateway: GatewayConfig | None) -> Executor:
    """Where map chunks run: `map.workers` local processes (or the gateway's workers), with reads
    and writes overlapping compute unless `map.overlap` is off; GPU workers (one per GPU, each task
    asking for its GPU) when `map.device` is cuda, or auto and this machine has a GPU dask-cuda sees."""
    remote = gateway is not None and gateway.address is not None
    gpu = cfg.device == "cuda" or (cfg.device == "auto" and not remote and local_gpus() > 0)
    return Executor(cfg.workers, gateway, overlap=cfg.overlap, gpu=gpu)


def run_hash(cfg: MapConfig, digest: str) -> str:
    """Identity of a map run: the map section and the model file's digest."""
    ident = cfg.model_dump(exclude={"output", "workers", "device", "batch_size", "cogs", "overlap"})
    return hashlib.sha256(json.dumps([ident, digest], sort_keys=True).encode()).hexdigest()
