"""Dense MISO inference (encoders once over a tile, LIIF queried at every pixel in batches) vs the
naive path (one crop encoded per output pixel), on the CPU; and one training step of the demo's
CPU-sized MISO (32 px crops, two Swin stages, many pedons per crop, no contrastive batch) vs the
previous default (64 px crops, four stages, contrastive unlabelled crops). Prints the ratios measured
in this run and the peak memory. Run: .venv/bin/python bench/bench_miso.py"""

from __future__ import annotations

import logging
import resource
import time

import torch

from misomap.models.miso.config import CropConfig, EncoderConfig, LocationConfig, MisoConfig
from misomap.models.miso.heads import TaskLoss
from misomap.models.miso.model import MisoModel, parameter_count

log = logging.getLogger("bench_miso")
TILE, CROP, NAIVE_PIXELS = 256, 64, 48
TRAIN_STEPS = 3


def train_step_seconds(cfg: MisoConfig, labelled: int, unlabelled: int) -> float:
    """Mean seconds of one optimiser step on random crops (after one warm-up step)."""
    model = MisoModel(cfg, (0.0, 0.0, TILE * 30.0, TILE * 30.0)).train()
    loss_fn, opt = TaskLoss(cfg.loss), torch.optim.AdamW(model.parameters())
    c, s = cfg.crops, cfg.crops.size_px
    b, q = labelled + unlabelled, c.label_slots + c.pseudo_points + c.grid**2
    img, cov = torch.randn(b, 9, s, s), torch.randn(b, 10, s, s)
    pix, xy = torch.rand(b, q, 2) * s, torch.rand(b, q, 2).double() * TILE * 30.0
    pf, so = torch.randint(0, 2, (b, q)), torch.randint(0, 7, (b, q))
    times = []
    for _ in range(TRAIN_STEPS + 1):
        t0 = time.perf_counter()
        loss = sum(loss_fn(model(img, cov, pix, xy).logits, pf, so).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / TRAIN_STEPS


def bench_training() -> None:
    """Training throughput: the demo's CPU-sized config vs the old default."""
    bands = dict(imagery=EncoderConfig(bands=[f"s2_{i}" for i in range(9)]),
                 covariates=EncoderConfig(bands=[f"c{i}" for i in range(10)]))
    old = MisoConfig(**bands, location=LocationConfig(num_scales=64))
    two = {"depths": [1, 1], "num_heads": [1, 2]}
    new = MisoConfig(imagery=EncoderConfig(bands=[f"s2_{i}" for i in range(9)], **two),
                     covariates=EncoderConfig(bands=[f"c{i}" for i in range(10)], **two),
                     crops=CropConfig(size_px=32, jitter_px=8, label_slots=12, pseudo_points=2, grid=2))
    old_s = train_step_seconds(old, 8, 8)  # 16 crops, half unlabelled for the contrastive losses
    new_s = train_step_seconds(new, 32, 0)
    log.info("training step: old default %.2f s (%d params), demo config %.2f s (%d params)", old_s,
             parameter_count(MisoModel(old, (0, 0, 1, 1))), new_s, parameter_count(MisoModel(new, (0, 0, 1, 1))))
    log.info("labelled crops per second: old %.1f, demo config %.1f (%.1f×); label slots per crop "
             "%d vs %d", 8 / old_s, 32 / new_s, (32 / new_s) / (8 / old_s), old.crops.label_slots,
             new.crops.label_slots)


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
    bench_training()
    log.info("peak RSS %.0f MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
