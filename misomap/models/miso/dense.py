"""Dense MISO inference: many crop-sized tiles encoded once, then every query point answered in
large flat batches — the path that makes maps and, through `predict_pedons`, scores pedons.

Tiles sit on one global grid of the cube (origin = the cube's top-left pixel corner): tile (i, j)
covers cube pixels [i·core − margin, i·core − margin + tile) in rows (likewise columns) and answers
the queries whose pixel falls in its central `core` × `core` block. The map and pedon scoring both
use this grid, so the model that makes the map is the model that was scored, pixel for pixel.

The LIIF head is evaluated in an algebraically equal but cheaper order than `LiifQuery`:
- the first layer of each stage MLP is linear in [feature, offset, cell], so its feature part is
  one matmul per feature cell (not per query and neighbour) and the rest is a 2-column product;
- the last layer is linear and the 4 neighbour weights sum to 1, so the weighted sum is taken of
  the hidden activations and the last layers of all stages become one matmul per query.
Only the middle layer and the two GELUs remain per query and neighbour. Results equal `MisoModel`'s
to float rounding (tested).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from misomap.core.classes import SOIL_ORDERS
from misomap.core.inputs import predictable
from misomap.cube.grid import Grid
from misomap.models.miso.attention import use_sdpa
from misomap.models.miso.heads import entropy, probabilities
from misomap.models.miso.liif import LiifQuery, _neighbours
from misomap.models.miso.model import MisoModel

log = logging.getLogger(__name__)

FP32_TAILS = ("heads", "fuse")
"""Where fp32 starts under bf16 autocast: at the task heads, or already at the per-query fusion.
With the fusion in fp32, a briefly trained tiny model under the CPU's bf16 autocast keeps class
flips against fp32 at or below 0.1% (tests/mapping/test_gpu_paths.py, slow); bench/gpu_check.sh
measures both tails on a GPU with a trained demo model."""

CPU_POINT_BATCH = 8192
"""Queries per batch on the CPU: the hidden activations of a batch stay in the L2/L3 cache."""
GPU_MEMORY_FRACTION = 0.25
"""Share of the GPU's total memory one query batch may use (total, not free, so that a rerun on
the same kind of GPU picks the same batch size and writes the same bytes)."""
FREE_MEMORY_FRACTION = 0.6
"""Share of the GPU's free memory (at load) one query batch may use when less is free than the
total-based size needs (another process on the GPU): the batch halves until it fits."""


@dataclass(frozen=True)
class TileGrid:
    """Crop-sized tiles on the cube's pixel grid; each keeps its central `core` px."""

    tile: int
    core: int

    @property
    def margin(self) -> int:
        return (self.tile - self.core) // 2

    @classmethod
    def for_model(cls, model: MisoModel) -> TileGrid:
        """Tiles of the training crop size keeping their central half: a kept pixel has at least a
        quarter crop of context on every side, like the jittered centre pedons in training."""
        tile = int(model.cfg.crops.size_px)
        return cls(tile, tile // 2)

    def assign(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The tiles holding points at continuous pixel coordinates (col, row) from a core-aligned
        origin: each used tile's top-left pixel (row0, col0) in row-major order, and each point's
        position in that list. Linear in the points (no sort)."""
        tr, tc = np.floor(row / self.core).astype(np.int64), np.floor(col / self.core).astype(np.int64)
        if not len(tr):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        r_min, c_min = tr.min(), tc.min()
        n_cols = int(tc.max() - c_min + 1)
        key = (tr - r_min) * n_cols + (tc - c_min)
        used = np.flatnonzero(np.bincount(key))
        lookup = np.zeros(used[-1] + 1, np.int64)
        lookup[used] = np.arange(len(used))
        row0 = (used // n_cols + r_min) * self.core - self.margin
        col0 = (used % n_cols + c_min) * self.core - self.margin
        return row0, col0, lookup[key]


@dataclass(frozen=True)
class _Encoded:
    """Per stage of one modality: the first LIIF layer's feature and cell-size part for every
    feature cell of every tile, flattened to (tiles·h·w, hidden), and the stage map's (h, w)."""

    projections: list[Tensor]
    shapes: list[tuple[int, int]]


def _project(query: LiifQuery, feats: list[Tensor], height: int, width: int) -> _Encoded:
    """Apply each stage MLP's first layer to every cell: its features, its bias, the query cell
    size term (the same for every query of tiles of height × width px) and the cell-centre part of
    the offset term (the offset is query − centre, and the layer is linear in it)."""
    projs, shapes = [], []
    for stage, feat in zip(query.stages, feats):
        b, c, h, w = feat.shape
        lin1 = stage.mlp[0]
        w_rel, w_cell = lin1.weight[:, c:c + 2], lin1.weight[:, c + 2:c + 4]
        cell = torch.tensor([2 * w / width, 2 * h / height], device=feat.device)  # cell size × scale
        cy, cx = torch.meshgrid(torch.arange(h, device=feat.device), torch.arange(w, device=feat.device),
                                indexing="ij")
        centre = torch.stack([2 * cx + 1 - w, 2 * cy + 1 - h], -1).reshape(-1, 2).float()  # × scale
        per_cell = (lin1.bias + w_cell @ cell) - centre @ w_rel.t()  # (h·w, hidden)
        cells = feat.permute(0, 2, 3, 1).reshape(b, h * w, c)  # NHWC view of Swin's tokens: no copy
        weight = lin1.weight[:, :c].t().expand(b, -1, -1)
        projs.append(torch.baddbmm(per_cell.expand(b, -1, -1), cells, weight).reshape(b * h * w, -1))
        shapes.append((h, w))
    return _Encoded(projs, shapes)


def _liif(query: LiifQuery, enc: _Encoded, tile: Tensor, coords: Tensor) -> Tensor:
    """`query(feats, coords, cell)` for flat queries (N,) of tiles `tile`, from the projections:
    the 4 neighbours go through the middle layer as one (4N, hidden) batch."""
    n = len(tile)
    hidden_sums = []
    for stage, proj, (h, w) in zip(query.stages, enc.projections, enc.shapes):
        lin1, _, lin2, _, _ = stage.mlp
        scale = torch.tensor([w, h], device=coords.device, dtype=coords.dtype)
        xs, ys = _neighbours(coords[:, 0], w), _neighbours(coords[:, 1], h)
        cx = torch.cat([xi for _ in ys for xi in xs])
        cy = torch.cat([yi for yi in ys for _ in xs])
        centre = torch.stack([(2 * cx + 1) / w - 1, (2 * cy + 1) / h - 1], dim=-1).to(coords.dtype)
        rel = (coords.repeat(4, 1) - centre) * scale
        z = proj[tile.repeat(4) * (h * w) + cy * w + cx].view(4, n, -1)
        z.add_((coords * scale) @ lin1.weight[:, -4:-2].t())  # the query part of the offset term
        z = z.view(4 * n, -1)
        torch.ops.aten.gelu_(z)
        z = torch.nn.functional.linear(z, lin2.weight, lin2.bias)
        torch.ops.aten.gelu_(z)
        area = ((rel[:, 0] * rel[:, 1]).abs() + 1e-9).view(4, n)
        weight = (area.flip(0) / area.sum(0)).unsqueeze(-1)  # each corner weighs by its opposite area
        z = z.view(4, n, -1)
        acc = z[0] * weight[0]
        for k in range(1, 4):
            acc.addcmul_(z[k], weight[k])
        hidden_sums.append(acc)
    w_out = torch.cat([s.mlp[4].weight for s in query.stages], dim=1)
    b_out = sum(s.mlp[4].bias for s in query.stages)
    h = torch.cat(hidden_sums, dim=-1)
    return query.norm(torch.addmm(b_out, h, w_out.t()))


class DenseMiso:
    """A MISO model ready for dense inference on a device.

    On a GPU: bf16 autocast (`amp`) with the task heads, logits and softmax in fp32 (and, with
    `fp32_tail="fuse"`, the per-query fusion of modalities, pixel values and location too), the Swin
    windows' attention through scaled_dot_product_attention (`sdpa`), channels-last tiles, inputs
    from pinned host memory and outputs copied back asynchronously into pinned host buffers (one
    synchronisation per call), optionally torch.compile (`compile`: a mode such as
    "reduce-overhead", which captures CUDA graphs). On the CPU all of these default to off and the
    same code runs in fp32."""

    def __init__(self, model: MisoModel, device: torch.device, point_batch: int | None = None,
                 tile_batch: int | None = None, compile: bool | str = False, amp: bool | None = None,
                 sdpa: bool | None = None, fp32_tail: str = "fuse") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.grid = TileGrid.for_model(model)
        self.n_img = len(model.cfg.imagery.bands)
        cov = model.cfg.covariates
        self.bands = tuple(model.cfg.imagery.bands) + (tuple(cov.bands) if cov is not None else ())
        """The bands of a tile, in order: imagery, then covariates."""
        self.point_batch = point_batch or auto_point_batch(model, device)
        # tiles per encoder batch: 64 of 32 px on the CPU, 2048 on a GPU, fewer for larger tiles
        self.tile_batch = tile_batch or max(1, int((2048 if device.type == "cuda" else 64)
                                                   * (32 / self.grid.tile) ** 2))
        self.amp = device.type == "cuda" if amp is None else amp
        if fp32_tail not in FP32_TAILS:
            raise ValueError(f"fp32_tail {fp32_tail!r}: one of {FP32_TAILS}")
        self.fp32_tail = fp32_tail
        if device.type == "cuda" if sdpa is None else sdpa:
            use_sdpa(self.model)
        self._query = self._query_batch
        if compile:
            mode = None if compile is True else compile
            self._query = torch.compile(self._query_batch, dynamic=mode is None, mode=mode)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast where `amp` is on (on the GPU by default), else nothing."""
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, a: np.ndarray) -> Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _host(self, shape: tuple[int, ...]) -> Tensor:
        """An fp32 host buffer for results: pinned on a GPU, so copies into it run asynchronously."""
        return torch.empty(shape, dtype=torch.float32, pin_memory=self.device.type == "cuda")

    def _encode(self, tiles: np.ndarray) -> tuple[_Encoded, _Encoded | None, Tensor | None, int, int]:
        """Encode tiles (T, bands, s, s) in batches; keep only the first-layer projections."""
        m = self.model
        img_parts: list[_Encoded] = []
        cov_parts: list[_Encoded] = []
        pixels: list[Tensor] = []
        height = width = 0
        for s in range(0, len(tiles), self.tile_batch):
            t = self._to_device(tiles[s:s + self.tile_batch])
            if self.device.type == "cuda":
                t = t.contiguous(memory_format=torch.channels_last)
            cov = t[:, self.n_img:] if m.cfg.covariates is not None else None
            enc = m.encode(t[:, :self.n_img], cov)
            height, width = enc.height, enc.width
            img_parts.append(_project(m.img_query, enc.imagery, height, width))
            if enc.covariates is not None:
                cov_parts.append(_project(m.cov_query, enc.covariates, height, width))
            if enc.pixels is not None:
                pixels.append(enc.pixels)

        def cat(parts: list[_Encoded]) -> _Encoded:
            return _Encoded([torch.cat(p) for p in zip(*(e.projections for e in parts))], parts[0].shapes)

        return (cat(img_parts), cat(cov_parts) if cov_parts else None,
                torch.cat(pixels) if pixels else None, height, width)

    def _query_batch(self, img: _Encoded, cov: _Encoded | None, pixels: Tensor | None, size: Tensor,
                     tile: Tensor, pix: Tensor, xy: Tensor) -> dict[str, Tensor]:
        """`MisoModel.query` for flat queries: tile (N,), pix (N, 2) in tile pixels, xy (N, 2) metres."""
        head_input = self._embed_batch(img, cov, pixels, size, tile, pix, xy)
        with torch.autocast(self.device.type, enabled=False):  # heads, logits (and softmax) in fp32
            return self.model.heads(head_input.float())

    def _embed_batch(self, img: _Encoded, cov: _Encoded | None, pixels: Tensor | None, size: Tensor,
                     tile: Tensor, pix: Tensor, xy: Tensor) -> Tensor:
        """What the heads read at flat queries (N, feature_dim): the fused embedding."""
        m = self.model
        coords = pix.float() / size * 2 - 1
        visual = _liif(m.img_query, img, tile, coords)
        cov_visual = _liif(m.cov_query, cov, tile, coords) if cov is not None else None
        with self._tail(cov_visual is not None or pixels is not None):
            if cov_visual is not None:
                visual = m.fuse(torch.cat([visual, cov_visual], dim=-1).float())
            if m.pixel is not None and pixels is not None:
                h, w = pixels.shape[-2:]
                col = pix[:, 0].floor().long().clamp(0, w - 1)
                row = pix[:, 1].floor().long().clamp(0, h - 1)
                values = pixels.permute(0, 2, 3, 1)[tile, row, col]
                visual = m.pixel_fuse(torch.cat([visual, m.pixel(values.float())], dim=-1))
            return m.head_input(visual, m.location(xy) if m.location_in_heads else None)

    def _tail(self, fusing: bool) -> contextlib.AbstractContextManager:
        """Autocast off for the per-query fusion (`fp32_tail="fuse"`), else as the rest."""
        if self.fp32_tail == "fuse" and fusing:
            return torch.autocast(self.device.type, enabled=False)
        return contextlib.nullcontext()

    @torch.no_grad()
    def predict(self, tiles: np.ndarray, tile: np.ndarray, pix: np.ndarray, xy: np.ndarray
                ) -> dict[str, np.ndarray]:
        """Probabilities at N points: tiles (T, bands, s, s) raw cube values (NaN = nodata, imagery
        bands then covariates), tile (N,) each point's tile, pix (N, 2) its (col, row) in that
        tile's pixels (centres at +0.5), xy (N, 2) EPSG:3338 metres. Returns `permafrost` (N,) and
        `soil_order` (N, classes) float32."""
        if not len(tile):
            shapes = {"permafrost": (0,), "soil_order": (0, len(SOIL_ORDERS))}
            return {t: np.zeros(shapes[t], np.float32) for t in self.model.cfg.loss.tasks}
        n = len(tile)
        out = {t: self._host((n,) if t == "permafrost" else (n, len(SOIL_ORDERS))) for t in self.model.cfg.loss.tasks}
        with self.autocast():
            img, cov, pixels, height, width = self._encode(tiles)
            size = torch.tensor([width, height], device=self.device, dtype=torch.float32)
            for s in range(0, n, self.point_batch):
                sl = slice(s, s + self.point_batch)
                logits = self._query(img, cov, pixels, size, self._to_device(tile[sl]),
                                     self._to_device(pix[sl].astype(np.float32)),
                                     self._to_device(xy[sl].astype(np.float64)))
                for k, v in probabilities(logits).items():  # fp32 sigmoid / softmax
                    out[k][sl].copy_(v, non_blocking=True)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # the asynchronous copies have landed
        return {k: v.numpy() for k, v in out.items()}

    @torch.no_grad()
    def embed(self, tiles: np.ndarray, tile: np.ndarray, pix: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """The heads' input at N points (N, feature_dim) float32: the fused visual embedding (plus
        the location embedding for a `location.role: input` model), arguments as `predict`. The
        heads are linear on it, so a model trained on these embeddings can reproduce the map."""
        dim = self.model.cfg.feature_dim
        if not len(tile):
            return np.zeros((0, dim), np.float32)
        out = []
        with self.autocast():
            img, cov, pixels, height, width = self._encode(tiles)
            size = torch.tensor([width, height], device=self.device, dtype=torch.float32)
            for s in range(0, len(tile), self.point_batch):
                sl = slice(s, s + self.point_batch)
                z = self._embed_batch(img, cov, pixels, size, self._to_device(tile[sl]),
                                      self._to_device(pix[sl].astype(np.float32)),
                                      self._to_device(xy[sl].astype(np.float64)))
                out.append(z.float().cpu().numpy())
        return np.concatenate(out)


def point_batch_for(per_query: int, total: int, free: int) -> int:
    """Queries per GPU batch for a model whose query takes `per_query` bytes of activations on a GPU
    of `total` bytes with `free` bytes free: a power of two from the total memory (the same on every
    GPU of a kind, so reruns write the same bytes), halved while it would not fit in the free memory
    (then a warning: batches of another size may round differently), between 2^10 and 2^22."""
    n = int(GPU_MEMORY_FRACTION * total / per_query)
    batch = int(2 ** np.clip(np.floor(np.log2(max(n, 1))), 10, 22))
    fit = batch
    while fit > 2 ** 10 and fit * per_query > FREE_MEMORY_FRACTION * free:
        fit //= 2
    if fit < batch:
        log.warning("only %.1f GiB of %.1f GiB GPU memory free: %d queries per batch instead of %d (the "
                    "map's last bits may differ from a run on an idle GPU)", free / 2**30, total / 2**30, fit, batch)
    return fit


def query_bytes(model: MisoModel) -> int:
    """Bytes of activations one query takes on the GPU: 4 neighbours × stages × hidden (×4 for
    temporaries) in fp32, and the fused features."""
    cfg = model.cfg
    stages = len(model.img_query.stages) + (len(model.cov_query.stages) if cfg.covariates is not None else 0)
    return 4 * 4 * 4 * stages * max(cfg.liif.hidden, cfg.feature_dim) + 64 * cfg.feature_dim


def auto_point_batch(model: MisoModel, device: torch.device) -> int:
    """Queries per batch: fixed on the CPU; on a GPU from its total and free memory
    (`point_batch_for`, torch.cuda.mem_get_info)."""
    if device.type != "cuda":
        return CPU_POINT_BATCH
    free, total = torch.cuda.mem_get_info(device)
    return point_batch_for(query_bytes(model), total, free)


def predict_pedons(dense: DenseMiso, imagery: np.ndarray, covariates: np.ndarray | None, grid: Grid,
                   x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """What the map shows at points (x, y in the grid's CRS): in-memory cube arrays (band, y, x) on
    `grid` (the cube's grid), each point answered at its pixel's centre by the global tile the map
    uses for that pixel — so scoring these scores the map (up to its uint8 percent rounding).

    Returns per point `permafrost`, `soil_order` (N, classes), their `<task>_entropy`, and `valid`
    (inside the grid and every band has data at the point's pixel, as the map requires)."""
    from misomap.models.miso.crops import read_window

    def window(r0: int, c0: int, size: int) -> np.ndarray:
        """Every band (imagery, then covariates) of a window; lazy cube bands read only it."""
        img = read_window(imagery, r0, c0, size)
        return img if covariates is None else np.concatenate([img, read_window(covariates, r0, c0, size)])

    res = grid.resolution
    col = np.floor((np.asarray(x, float) - grid.xmin) / res) + 0.5
    row = np.floor((grid.ymax - np.asarray(y, float)) / res) + 0.5
    g = dense.grid
    r0, c0, inverse = g.assign(col, row)
    n_bands = imagery.shape[0] + (0 if covariates is None else covariates.shape[0])
    tiles = np.stack([window(int(r), int(c), g.tile) for r, c in zip(r0, c0)]) if len(r0) \
        else np.zeros((0, n_bands, g.tile, g.tile), np.float32)
    pix = np.stack([col - c0[inverse], row - r0[inverse]], -1)
    xy = np.stack([grid.xmin + col * res, grid.ymax - row * res], -1)
    probs = {k: torch.from_numpy(v) for k, v in dense.predict(tiles, inverse, pix, xy).items()}
    result = {k: v.numpy() for k, v in probs.items()}
    result.update({f"{k}_entropy": e.numpy() for k, e in entropy(probs).items()})
    # the point's own pixel, inside its tile: every required band has data there, as the map
    # requires (misomap.core.inputs; outside the grid the tile holds NaN: invalid)
    in_r, in_c = np.floor(pix[:, 1]).astype(int), np.floor(pix[:, 0]).astype(int)
    result["valid"] = predictable(tiles[inverse, :, in_r, in_c].T, dense.bands)
    return result
