"""Dense MISO inference (encoders once over a tile, LIIF queried at every pixel in batches) vs the
naive path (one crop encoded per output pixel), on the CPU; prints the throughput ratio measured
in this run and the peak memory. Run: .venv/bin/python bench/bench_miso.py"""

from __future__ import annotations

import logging
import resource
import time

import torch

from misomap.models.miso.config import CropConfig, EncoderConfig, LocationConfig, MisoConfig
from misomap.models.miso.model import MisoModel, parameter_count

log = logging.getLogger("bench_miso")
TILE, CROP, NAIVE_PIXELS = 256, 64, 48


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = MisoConfig(imagery=EncoderConfig(bands=[f"s2_{i}" for i in range(9)], embed_dim=16),
                     covariates=EncoderConfig(bands=[f"c{i}" for i in range(10)], embed_dim=16),
                     location=LocationConfig(num_scales=16), crops=CropConfig(size_px=CROP))
    model = MisoModel(cfg, (0.0, 0.0, TILE * 30.0, TILE * 30.0)).eval()
    img, cov = torch.randn(9, TILE, TILE), torch.randn(10, TILE, TILE)
    rows, cols = torch.meshgrid(torch.arange(TILE) + 0.5, torch.arange(TILE) + 0.5, indexing="ij")
    pix = torch.stack([cols.ravel(), rows.ravel()], -1)
    xy = torch.stack([pix[:, 0] * 30.0, TILE * 30.0 - pix[:, 1] * 30.0], -1).double()

    t0 = time.perf_counter()
    dense = model.predict_dense(img, cov, pix, xy, batch_points=16384, progress=True)
    dense_s = time.perf_counter() - t0
    dense_rate = len(pix) / dense_s

    half = CROP // 2
    pad_img = torch.nn.functional.pad(img, (half, half, half, half), value=float("nan"))
    pad_cov = torch.nn.functional.pad(cov, (half, half, half, half), value=float("nan"))
    t0 = time.perf_counter()
    idx = torch.randperm(len(pix))[:NAIVE_PIXELS]
    for i in idx.tolist():
        r, c = i // TILE, i % TILE
        crop_i = pad_img[:, r:r + CROP, c:c + CROP][None]
        crop_c = pad_cov[:, r:r + CROP, c:c + CROP][None]
        local = torch.tensor([[[half + 0.5, half + 0.5]]])
        model.predict_points(crop_i, crop_c, local, xy[i].view(1, 1, 2))
    naive_rate = NAIVE_PIXELS / (time.perf_counter() - t0)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("MISO %d parameters, tile %d×%d px, crop %d px, 1 CPU thread", parameter_count(model), TILE,
             TILE, CROP)
    log.info("dense: %.0f px/s (%d px in %.1f s); naive crop per pixel: %.1f px/s (%d px sampled)",
             dense_rate, len(pix), dense_s, naive_rate, NAIVE_PIXELS)
    log.info("dense / naive throughput ratio: %.0f×; peak RSS %.0f MB", dense_rate / naive_rate, peak_mb)
    log.info("permafrost P range %.3f..%.3f, mean entropy %.3f nats", float(dense["permafrost"].min()),
             float(dense["permafrost"].max()), float(dense["permafrost_entropy"].mean()))


if __name__ == "__main__":
    main()
