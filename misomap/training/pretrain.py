"""Self-supervised pretraining (SimMIM) of MISO's Swin-V2 encoders on unlabelled cube tiles."""

from __future__ import annotations

import logging
import time

import numpy as np

from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.models.miso.config import EncoderConfig, MisoConfig
from misomap.models.miso.crops import CropSampler, Points
from misomap.models.miso.pretrain import pretrain_encoder
from misomap.models.miso.train import select_device
from misomap.training.miso_inputs import ENCODERS, CubeArrays, resolve_config

log = logging.getLogger(__name__)


def pretrain(cfg: MisoConfig, arrays: CubeArrays, out: str, storage: StorageConfig,
             seed: int) -> dict[str, str]:
    """Pretrain the Swin-V2 encoders (SimMIM) on unlabelled tiles of `arrays`, each to
    `<out>/<encoder>.safetensors`; returns where each went."""
    cfg = resolve_config(cfg, arrays, {})
    device = select_device(cfg.train)
    empty = Points(np.empty(0), np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64))
    written = {}
    for which in ENCODERS:
        enc: EncoderConfig | None = getattr(cfg, which)
        if enc is None:
            continue
        arr = arrays.imagery if which == "imagery" else arrays.covariates
        sampler = CropSampler(arr, None, arrays.grid, empty, cfg.crops)
        t0 = time.perf_counter()
        data, history = pretrain_encoder(enc, cfg.crops.size_px,
                                         lambda n, rng, s=sampler: s.unlabelled(n, rng).imagery,
                                         cfg.pretrain, seed, device)
        loc = f"{out}/{which}.safetensors"
        Target(loc, storage).write_bytes(data)
        log.info("pretrained %s encoder in %.0f s (masked L1 %.4f → %.4f) → %s", which,
                 time.perf_counter() - t0, history[0], history[-1], loc)
        written[which] = loc
    return written
