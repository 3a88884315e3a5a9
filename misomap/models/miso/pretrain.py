"""Self-supervised SimMIM pretraining of a Swin-V2 encoder on unlabelled tiles.

Random square patches of the (normalised) input are replaced by a learned mask token after the
patch embedding; a 1×1 conv + pixel shuffle on the last stage reconstructs the pixels, and the L1
loss counts masked, valid pixels only. The encoder is returned as SatlasPretrain-layout
safetensors bytes with its bands, so `weights.load_encoder_weights` reads it like Satlas weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from misomap.models.miso.config import EncoderConfig, PretrainConfig
from misomap.models.miso.encoders import BandNorm, SwinV2Encoder, build_encoder
from misomap.models.miso.errors import TrainingError
from misomap.models.miso.weights import encoder_checkpoint_bytes

log = logging.getLogger(__name__)

TileSampler = Callable[[int, np.random.Generator], np.ndarray]
"""Returns n unlabelled tiles (n, bands, size, size), NaN = nodata."""


class SimMIM(nn.Module):
    """Masked-image modelling around a Swin-V2 encoder."""

    def __init__(self, encoder: SwinV2Encoder, norm: BandNorm, n_bands: int, patch_px: int) -> None:
        super().__init__()
        self.encoder, self.norm, self.patch_px = encoder, norm, patch_px
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, encoder.out_channels[0]))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(nn.Conv2d(encoder.out_channels[-1], encoder.stride**2 * n_bands, 1),
                                     nn.PixelShuffle(encoder.stride))

    def forward(self, tiles: Tensor, mask: Tensor) -> Tensor:
        """L1 reconstruction loss; mask (B, H/patch_px, W/patch_px) True = hidden."""
        x = self.norm(tiles)
        tokens = self.encoder.embed(x)
        per_token = self.patch_px * tokens.shape[1] // tiles.shape[-2]
        m = mask.repeat_interleave(per_token, 1).repeat_interleave(per_token, 2).unsqueeze(-1).to(tokens.dtype)
        tokens = tokens * (1 - m) + self.mask_token * m
        rec = self.decoder(self.encoder.stages(tokens)[-1])
        px = mask.repeat_interleave(self.patch_px, 1).repeat_interleave(self.patch_px, 2)
        weight = (px & torch.isfinite(tiles).all(1)).to(x.dtype)
        err = (rec - x).abs().mean(1)
        return (err * weight).sum() / weight.sum().clamp_min(1)


def random_mask(n: int, size: int, patch_px: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """n boolean masks of (size/patch_px)² patches with round(ratio·count) hidden each."""
    side = size // patch_px
    k = round(ratio * side * side)
    masks = np.zeros((n, side * side), dtype=bool)
    for i in range(n):
        masks[i, rng.choice(side * side, k, replace=False)] = True
    return masks.reshape(n, side, side)


def pretrain_encoder(enc_cfg: EncoderConfig, size_px: int, sample: TileSampler, pcfg: PretrainConfig,
                     seed: int, device: torch.device) -> tuple[bytes, list[float]]:
    """Pretrain one encoder; returns its checkpoint bytes (Satlas layout) and the per-epoch losses."""
    if enc_cfg.arch != "swin_v2":
        raise TrainingError(f"pretraining supports swin_v2 encoders, not {enc_cfg.arch!r} (bands "
                            f"{enc_cfg.bands}): load Prithvi weights for a vit encoder instead")
    stride = enc_cfg.patch_size * 2 ** (len(enc_cfg.depths) - 1)
    if pcfg.mask_patch_px % enc_cfg.patch_size or size_px % pcfg.mask_patch_px or size_px % stride:
        raise TrainingError(f"pretrain.mask_patch_px={pcfg.mask_patch_px} must be a multiple of the patch "
                            f"size {enc_cfg.patch_size} and divide crops.size_px={size_px}, itself a "
                            f"multiple of the encoder stride {stride}")
    torch.manual_seed(seed)
    encoder = build_encoder(enc_cfg, size_px)
    model = SimMIM(encoder, BandNorm(enc_cfg.mean, enc_cfg.std, len(enc_cfg.bands)), len(enc_cfg.bands),
                   pcfg.mask_patch_px).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=pcfg.lr, weight_decay=pcfg.weight_decay)
    total = pcfg.epochs * pcfg.steps_per_epoch
    history = []
    for epoch in range(pcfg.epochs):
        rng = np.random.default_rng([seed, epoch])
        losses = []
        for s in tqdm(range(pcfg.steps_per_epoch), desc=f"pretrain {epoch}", leave=False, disable=None):
            step = epoch * pcfg.steps_per_epoch + s
            for g in opt.param_groups:
                g["lr"] = pcfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            tiles = torch.as_tensor(sample(pcfg.batch_size, rng), device=device)
            mask = torch.as_tensor(random_mask(len(tiles), size_px, pcfg.mask_patch_px, pcfg.mask_ratio, rng),
                                   device=device)
            loss = model(tiles, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)))
        log.info("pretrain %d-band encoder epoch %d: masked L1 %.4f", len(enc_cfg.bands), epoch, history[-1])
    return encoder_checkpoint_bytes(encoder.cpu(), enc_cfg), history
