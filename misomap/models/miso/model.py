"""The MISO model: imagery + covariate encoders, LIIF queries at continuous points, a location
encoder, contrastive embeddings and task heads.

Two inference paths share `query`: `predict_points` encodes one crop per row (training and
point prediction), `predict_dense` encodes a large tile once and queries it at any number of
points in batches (maps). On the same pixels and points they give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from misomap.models.miso.config import MisoConfig
from misomap.models.miso.encoders import BandNorm, build_encoder
from misomap.models.miso.heads import Heads, entropy, probabilities
from misomap.models.miso.liif import LiifQuery
from misomap.models.miso.location import LocationEncoder


@dataclass(frozen=True)
class EncodedTile:
    """Stage maps of one batch of images; `height`/`width` are the padded pixel size they cover;
    `pixels` the normalised input bands (imagery then covariates) for the pixel skip, or None."""

    imagery: list[Tensor]
    covariates: list[Tensor] | None
    height: int
    width: int
    pixels: Tensor | None = None


@dataclass(frozen=True)
class QueryOutput:
    """Per-query logits and the embeddings the contrastive losses align; `pixel_logits` the
    auxiliary pixel heads' (`loss.pixel_head`), None without them."""

    logits: dict[str, Tensor]
    imagery: Tensor
    covariates: Tensor | None
    visual: Tensor
    location: Tensor | None
    pixel_logits: dict[str, Tensor] | None = None


class MisoModel(nn.Module):
    """MISO; `bounds` (EPSG:3338 xmin, ymin, xmax, ymax) scale coordinates for the location encoder."""

    def __init__(self, cfg: MisoConfig, bounds: tuple[float, float, float, float]) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.feature_dim
        ic = cfg.imagery
        self.img_norm = BandNorm(ic.mean, ic.std, len(ic.bands), ic.low, ic.high)
        self.img_encoder = build_encoder(ic, cfg.crops.size_px)
        h = cfg.liif.hidden
        self.img_query = LiifQuery(self.img_encoder.out_channels, h, d)
        self.stride = self.img_encoder.stride
        if cfg.covariates is not None:
            cc = cfg.covariates
            self.cov_norm = BandNorm(cc.mean, cc.std, len(cc.bands), cc.low, cc.high)
            self.cov_encoder = build_encoder(cc, cfg.crops.size_px)
            self.cov_query = LiifQuery(self.cov_encoder.out_channels, h, d)
            self.fuse = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
            self.stride = int(np.lcm(self.stride, self.cov_encoder.stride))
        self.pixel = None
        if cfg.liif.pixel_skip:
            n_bands = len(ic.bands) + (len(cfg.covariates.bands) if cfg.covariates is not None else 0)
            self.pixel = nn.Sequential(nn.Linear(n_bands, h), nn.GELU(), nn.Linear(h, d))
            self.pixel_fuse = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))
        bounds = cfg.location.bounds or bounds
        self.location = LocationEncoder(cfg.location, bounds, d) if cfg.location.enabled else None
        self.heads = Heads(d, cfg.loss.tasks)
        self.pixel_heads = Heads(d, cfg.loss.tasks) if cfg.loss.pixel_head > 0 else None  # last: the
        # other parts' initial weights are the same with or without it

    def _pad(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return F.pad(x, (0, -w % self.stride, 0, -h % self.stride))

    def encode(self, imagery: Tensor, covariates: Tensor | None) -> EncodedTile:
        """Normalise (nodata → band mean), pad right/bottom to the stride, run the encoders."""
        img = self._pad(self.img_norm(imagery))
        cov, cov_feats = None, None
        if self.cfg.covariates is not None:
            if covariates is None:
                raise ValueError("this model has a covariate encoder: pass the covariate bands")
            cov = self._pad(self.cov_norm(covariates))
            cov_feats = self.cov_encoder(cov)
        pixels = None
        if self.pixel is not None:
            pixels = img if cov is None else torch.cat([img, cov], dim=1)
        return EncodedTile(self.img_encoder(img), cov_feats, img.shape[-2], img.shape[-1], pixels)

    @staticmethod
    def _pixel_values(pixels: Tensor, pix: Tensor) -> Tensor:
        """The bands (B, Q, C) of the pixels holding the points pix (B, Q, 2) (nearest pixel)."""
        b, c, h, w = pixels.shape
        col = pix[..., 0].floor().long().clamp(0, w - 1)
        row = pix[..., 1].floor().long().clamp(0, h - 1)
        idx = (row * w + col).unsqueeze(1).expand(-1, c, -1)
        return torch.gather(pixels.flatten(2), 2, idx).transpose(1, 2)

    def query(self, enc: EncodedTile, pix: Tensor, xy: Tensor) -> QueryOutput:
        """Predict at points: pix (B, Q, 2) continuous (col, row) in the encoded pixels (pixel
        centres at +0.5), xy (B, Q, 2) the same points in EPSG:3338 metres."""
        size = torch.tensor([enc.width, enc.height], device=pix.device, dtype=torch.float32)
        coords = pix.float() / size * 2 - 1
        cell = (2 / size).expand_as(coords)
        img = self.img_query(enc.imagery, coords, cell)
        cov = None
        visual = img
        if enc.covariates is not None:
            cov = self.cov_query(enc.covariates, coords, cell)
            visual = self.fuse(torch.cat([img, cov], dim=-1))
        pixel_logits = None
        if self.pixel is not None and enc.pixels is not None:
            px = self.pixel(self._pixel_values(enc.pixels, pix))
            visual = self.pixel_fuse(torch.cat([visual, px], dim=-1))
            pixel_logits = self.pixel_heads(px) if self.pixel_heads is not None else None
        loc = self.location(xy) if self.location is not None else None
        return QueryOutput(self.heads(self.head_input(visual, loc)), img, cov, visual, loc, pixel_logits)

    @property
    def location_in_heads(self) -> bool:
        """Whether the heads read the location embedding (`location.role` input)."""
        return self.location is not None and self.cfg.location.role == "input"

    def head_input(self, visual: Tensor, loc: Tensor | None) -> Tensor:
        """What the heads read: the visual embedding, plus the location embedding for an `input`
        model (an `alignment` model's location embedding only feeds the contrastive loss)."""
        return visual + loc if loc is not None and self.location_in_heads else visual

    def forward(self, imagery: Tensor, covariates: Tensor | None, pix: Tensor, xy: Tensor) -> QueryOutput:
        return self.query(self.encode(imagery, covariates), pix, xy)

    @torch.no_grad()
    def predict_points(self, imagery: Tensor, covariates: Tensor | None, pix: Tensor,
                       xy: Tensor) -> dict[str, Tensor]:
        """Probabilities and entropies at points of a batch of crops (keys `<task>`, `<task>_entropy`)."""
        self.eval()
        return _summarise(self(imagery, covariates, pix, xy).logits)

    @torch.no_grad()
    def predict_dense(self, imagery: Tensor, covariates: Tensor | None, pix: Tensor, xy: Tensor,
                      batch_points: int = 65536, progress: bool = False) -> dict[str, Tensor]:
        """Encode one tile (C, H, W) once, then query it at N points pix/xy (N, 2) in batches."""
        self.eval()
        enc = self.encode(imagery[None], None if covariates is None else covariates[None])
        parts: list[dict[str, Tensor]] = []
        starts = range(0, pix.shape[0], batch_points)
        for s in tqdm(starts, desc="query", disable=not progress, leave=False):
            out = self.query(enc, pix[None, s:s + batch_points], xy[None, s:s + batch_points])
            parts.append({k: v[0] for k, v in _summarise(out.logits).items()})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _summarise(logits: dict[str, Tensor]) -> dict[str, Tensor]:
    probs = probabilities(logits)
    return {**probs, **{f"{k}_entropy": v for k, v in entropy(probs).items()}}


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
