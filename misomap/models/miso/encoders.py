"""Hierarchical image encoders with their first patch embedding sized to the input bands.

Swin-V2 (torchvision, any width/depth) is the default; a timm ViT serves Prithvi-style weights.
Each encoder returns one NCHW feature map per stage, and owns `backbone`, the module whose state
dict is the checkpoint layout (torchvision `features.*` or timm ViT keys).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

from misomap.models.miso.config import EncoderConfig


class BandNorm(nn.Module):
    """Per-band clamp to [low, high] (if given), (x - mean) / std, then nodata (NaN) to 0, i.e. to
    the band mean. The bounds come from the config, which every checkpoint carries, so they are not
    saved as weights."""

    def __init__(self, mean: list[float] | None, std: list[float] | None, n_bands: int,
                 low: list[float] | None = None, high: list[float] | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean or [0.0] * n_bands).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std or [1.0] * n_bands).view(1, -1, 1, 1))
        self.clamped = low is not None and high is not None
        if self.clamped:
            self.register_buffer("low", torch.tensor(low).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("high", torch.tensor(high).view(1, -1, 1, 1), persistent=False)

    def set(self, mean: list[float], std: list[float]) -> None:
        """Replace the statistics (e.g. computed from training pixels by the job)."""
        self.mean.copy_(torch.tensor(mean).view_as(self.mean))
        self.std.copy_(torch.tensor(std).view_as(self.std))

    def forward(self, x: Tensor) -> Tensor:
        if self.clamped:
            x = torch.clamp(x, self.low, self.high)  # NaN (nodata) stays NaN
        return torch.nan_to_num((x - self.mean) / self.std, nan=0.0, posinf=0.0, neginf=0.0)


class SwinV2Encoder(nn.Module):
    """torchvision Swin-V2; outputs after every stage (strides 4, 8, 16, 32 for 4 stages)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        backbone = SwinTransformer(
            patch_size=[cfg.patch_size, cfg.patch_size], embed_dim=cfg.embed_dim, depths=cfg.depths,
            num_heads=cfg.num_heads, window_size=[cfg.window_size, cfg.window_size],
            stochastic_depth_prob=cfg.drop_path, block=SwinTransformerBlockV2,
            downsample_layer=PatchMergingV2)
        stem = backbone.features[0][0]
        backbone.features[0][0] = nn.Conv2d(len(cfg.bands), stem.out_channels,
                                            kernel_size=stem.kernel_size, stride=stem.stride)
        backbone.norm = nn.Identity()   # classification parts unused: keep only `features.*`
        backbone.head = nn.Identity()
        self.backbone = backbone
        self.out_channels = [cfg.embed_dim * 2**i for i in range(len(cfg.depths))]
        self.stride = cfg.patch_size * 2 ** (len(cfg.depths) - 1)

    @property
    def stem(self) -> nn.Conv2d:
        """The first patch-embedding convolution (its input channels are the bands)."""
        return self.backbone.features[0][0]

    def embed(self, x: Tensor) -> Tensor:
        """Patch embedding: NCHW image to NHWC tokens."""
        return self.backbone.features[0](x)

    def stages(self, tokens: Tensor) -> list[Tensor]:
        """Run the stages on NHWC tokens; one NCHW map per stage."""
        outs = []
        for i, layer in enumerate(self.backbone.features[1:], start=1):
            tokens = layer(tokens)
            if i % 2 == 1:
                outs.append(tokens.permute(0, 3, 1, 2))
        return outs

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.stages(self.embed(x))


class ViTEncoder(nn.Module):
    """timm ViT (Prithvi-style); four evenly spaced blocks' outputs as stages, all at one stride."""

    def __init__(self, cfg: EncoderConfig, img_size: int) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.backbone = VisionTransformer(
            img_size=img_size, patch_size=cfg.patch_size, in_chans=len(cfg.bands),
            embed_dim=cfg.embed_dim, depth=cfg.vit_depth, num_heads=cfg.vit_heads, num_classes=0,
            global_pool="", dynamic_img_size=True, drop_path_rate=cfg.drop_path)
        d = cfg.vit_depth
        self.indices = sorted({max(0, round(d * k / 4) - 1) for k in (1, 2, 3, 4)})
        self.out_channels = [cfg.embed_dim] * len(self.indices)
        self.stride = cfg.patch_size

    @property
    def stem(self) -> nn.Conv2d:
        return self.backbone.patch_embed.proj

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.backbone.forward_intermediates(x, indices=self.indices, output_fmt="NCHW",
                                                   intermediates_only=True)


Encoder = SwinV2Encoder | ViTEncoder


def build_encoder(cfg: EncoderConfig, crop_px: int) -> Encoder:
    """The encoder the config names, its first layer taking `len(cfg.bands)` channels."""
    if cfg.arch == "swin_v2":
        return SwinV2Encoder(cfg)
    return ViTEncoder(cfg, crop_px)
