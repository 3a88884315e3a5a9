"""Pretrained-weight loading: SatlasPretrain (torchvision Swin-V2) and Prithvi (ViT-MAE) key
layouts built here at small sizes, band selection/reordering, and clear errors."""

from __future__ import annotations

import io

import pytest
import torch
from safetensors.torch import save as save_safetensors
from torch import nn
from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

from misomap.models.miso.config import SATLAS_S2_BANDS, EncoderConfig, PretrainConfig, WeightsConfig
from misomap.models.miso.encoders import build_encoder
from misomap.models.miso.errors import TrainingError, WeightsError
from misomap.models.miso.pretrain import pretrain_encoder
from misomap.models.miso.weights import encoder_checkpoint_bytes, load_encoder_weights, read_checkpoint

torch.set_num_threads(1)
OUR_BANDS = ["s2_summer_nir", "s2_summer_red", "s2_summer_swir16", "s2_summer_blue"]


def satlas_checkpoint(n_bands: int = 9, embed: int = 16) -> dict[str, torch.Tensor]:
    """A SatlasPretrain-style Sentinel-2 Swin-V2 checkpoint: torchvision swin with an n-band stem
    under `backbone.backbone.`, plus its norm/head and the FPN/head keys of the full model."""
    torch.manual_seed(1)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=embed, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                           window_size=[4, 4], block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)
    swin.features[0][0] = nn.Conv2d(n_bands, embed, kernel_size=(4, 4), stride=(4, 4))
    state = {f"backbone.backbone.{k}": v for k, v in swin.state_dict().items()}
    state["intermediates.0.fpn.inner_blocks.0.0.weight"] = torch.zeros(8, embed, 1, 1)
    state["heads.0.layers.0.0.weight"] = torch.zeros(4, 8, 3, 3)
    return state


def swin_cfg(bands: list[str], embed: int = 16, layout: str = "satlas", ckpt_bands=SATLAS_S2_BANDS) -> EncoderConfig:
    return EncoderConfig(bands=bands, embed_dim=embed, weights=WeightsConfig(
        path="weights.safetensors", layout=layout, bands=None if ckpt_bands is None else list(ckpt_bands)))


def load(state: dict, cfg: EncoderConfig, fmt: str = "safetensors", metadata: dict | None = None):
    if fmt == "safetensors":
        data = save_safetensors(state, metadata=metadata)
    else:
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
    enc = build_encoder(cfg, 32)
    return enc, load_encoder_weights(enc, read_checkpoint(data, "weights." + fmt), cfg.weights, cfg.bands)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_satlas_layout_loads_with_bands_selected_and_reordered(fmt: str) -> None:
    state = satlas_checkpoint()
    enc, info = load(state, swin_cfg(OUR_BANDS), fmt)
    stem = state["backbone.backbone.features.0.0.weight"]
    idx = [SATLAS_S2_BANDS.index(b) for b in ("nir", "red", "swir16", "blue")]
    assert torch.equal(enc.stem.weight, stem[:, idx])
    got = enc.backbone.state_dict()
    assert torch.equal(got["features.3.0.attn.qkv.weight"], state["backbone.backbone.features.3.0.attn.qkv.weight"])
    assert info.checkpoint_bands == list(SATLAS_S2_BANDS)


def test_band_missing_from_checkpoint_is_named() -> None:
    with pytest.raises(WeightsError, match="'s2_summer_vv'"):
        load(satlas_checkpoint(), swin_cfg(["s2_summer_red", "s2_summer_vv"]))


def test_checkpoint_for_another_band_count_fails_clearly() -> None:
    with pytest.raises(WeightsError, match="5 input channels but the checkpoint's bands are 9"):
        load(satlas_checkpoint(n_bands=5), swin_cfg(OUR_BANDS))


def test_wrong_width_names_the_keys_and_shapes() -> None:
    with pytest.raises(WeightsError, match=r"wrong shapes \['features.0.0.weight \(16, 4, 4, 4\) != \(24"):
        load(satlas_checkpoint(embed=16), swin_cfg(OUR_BANDS, embed=24))


def test_missing_and_unexpected_keys_are_named() -> None:
    state = satlas_checkpoint()
    del state["backbone.backbone.features.1.0.mlp.0.weight"]
    state["backbone.backbone.features.9.0.bogus"] = torch.zeros(1)
    with pytest.raises(WeightsError) as err:
        load(state, swin_cfg(OUR_BANDS))
    assert "features.1.0.mlp.0.weight" in str(err.value) and "features.9.0.bogus" in str(err.value)


def test_non_strict_loading_tolerates_missing_keys() -> None:
    state = satlas_checkpoint()
    del state["backbone.backbone.features.1.0.mlp.0.weight"]
    cfg = swin_cfg(OUR_BANDS)
    cfg = cfg.model_copy(update={"weights": cfg.weights.model_copy(update={"strict": False})})
    enc, _ = load(state, cfg)
    assert torch.equal(enc.stem.weight[:, 1], state["backbone.backbone.features.0.0.weight"][:, 0])


def test_no_swin_keys_and_no_band_list_fail_clearly() -> None:
    with pytest.raises(WeightsError, match="no Swin-V2 'features"):
        load({"encoder.blocks.0.norm1.weight": torch.zeros(4)}, swin_cfg(OUR_BANDS))
    with pytest.raises(WeightsError, match="does not record its bands"):
        load(satlas_checkpoint(), swin_cfg(OUR_BANDS, ckpt_bands=None))


def test_layout_must_match_architecture() -> None:
    with pytest.raises(WeightsError, match="reads the 'satlas' layout"):
        load(satlas_checkpoint(), swin_cfg(OUR_BANDS, layout="prithvi"))


class NotATensor:
    pass


def test_pickles_and_garbage_are_refused() -> None:
    buf = io.BytesIO()
    torch.save({"w": NotATensor()}, buf)
    with pytest.raises(WeightsError, match="weights-only"):
        read_checkpoint(buf.getvalue(), "evil.pth")
    with pytest.raises(WeightsError, match="junk.bin"):
        read_checkpoint(b"not a checkpoint at all", "junk.bin")


PRITHVI_BANDS = ["blue", "green", "red", "nir08", "swir16", "swir22"]


def prithvi_checkpoint(frames: int = 3, v2: bool = False) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """The real Prithvi ViT-MAE layouts, scaled down (32 px, patch 8, width 32): v1 (Prithvi-100M:
    3 frames) keys at the top level, v2 (Prithvi-EO-2.0: 4 frames) under `encoder.`/`decoder.`;
    both tubelet 1, i.e. patch_embed.proj.weight (D, C, 1, p, p), and a pos_embed (1, 1 + frames ×
    grid, D) whose temporal slice t is the 2-D embedding + t (so slices are told apart). Returns it
    and the 2-D timm ViT whose pos_embed is slice 0."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(2)
    vit = VisionTransformer(img_size=32, patch_size=8, in_chans=6, embed_dim=32, depth=4, num_heads=2,
                            num_classes=0, global_pool="")
    state = dict(vit.state_dict())
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"][:, :, None]  # tubelet 1
    pos = state.pop("pos_embed")
    state["pos_embed"] = torch.cat([pos[:, :1]] + [pos[:, 1:] + t for t in range(frames)], dim=1)
    state["mask_token"] = torch.zeros(1, 1, 32)
    state["decoder_embed.weight"] = torch.zeros(16, 32)
    state["decoder_pos_embed"] = torch.zeros(1, 1 + frames * 16, 16)
    state["decoder_blocks.0.attn.qkv.weight"] = torch.zeros(48, 16)
    state["decoder_pred.weight"] = torch.zeros(6 * 64, 16)
    if v2:
        state = {(f"decoder.{k}" if k.startswith(("decoder", "mask")) else f"encoder.{k}"): v
                 for k, v in state.items()}
    return state, vit


def vit_cfg(bands: list[str], frames: int = 3, frame: int | str = 0) -> EncoderConfig:
    return EncoderConfig(arch="vit", bands=bands, embed_dim=32, patch_size=8, vit_depth=4, vit_heads=2,
                         weights=WeightsConfig(path="prithvi.pt", layout="prithvi", bands=PRITHVI_BANDS,
                                               frames=frames, frame=frame))


@pytest.mark.parametrize("v2", [False, True])
def test_prithvi_layout_loads_and_matches_the_original_on_selected_bands(v2: bool) -> None:
    frames = 4 if v2 else 3
    state, vit = prithvi_checkpoint(frames, v2=v2)
    key = "encoder.patch_embed.proj.weight" if v2 else "patch_embed.proj.weight"
    assert state[key].shape == (32, 6, 1, 8, 8)
    assert state[key.replace("patch_embed.proj.weight", "pos_embed")].shape == (1, 1 + frames * 16, 32)
    bands = ["s2_summer_red", "s2_summer_nir08", "s2_summer_blue"]
    enc, _ = load(state, vit_cfg(bands, frames, 0), "pth")
    vit.eval()
    enc.eval()
    x = torch.randn(2, 3, 32, 32)
    full = torch.zeros(2, 6, 32, 32)
    full[:, [2, 3, 0]] = x
    ours = enc(x)
    theirs = vit.forward_intermediates(full, indices=enc.indices, output_fmt="NCHW", intermediates_only=True)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("frames", [3, 4])
def test_prithvi_frames_are_chosen_or_averaged_by_config(frames: int) -> None:
    state, vit = prithvi_checkpoint(frames, v2=frames == 4)
    base = vit.state_dict()["pos_embed"]
    for frame, shift in [(frames - 1, frames - 1), ("mean", (frames - 1) / 2)]:
        enc, _ = load(state, vit_cfg(PRITHVI_BANDS, frames, frame), "pth")
        pos = enc.backbone.pos_embed
        assert pos.shape == (1, 17, 32)
        assert torch.allclose(pos[:, 1:], base[:, 1:] + shift, atol=1e-6)
        assert torch.allclose(pos[:, :1], base[:, :1])


@pytest.mark.parametrize("ckpt_frames,cfg_frames", [(3, 4), (4, 3), (3, 1)])
def test_prithvi_frame_count_the_config_does_not_allow_names_the_shapes(ckpt_frames, cfg_frames) -> None:
    state, _ = prithvi_checkpoint(ckpt_frames, v2=ckpt_frames == 4)
    with pytest.raises(WeightsError, match=rf"pos_embed \(1, {1 + ckpt_frames * 16}, 32\) holds "
                                           rf"{ckpt_frames * 16} patch tokens.*weights.frames={cfg_frames}"
                                           r".*\(32, 6, 1, 8, 8\)"):
        load(state, vit_cfg(PRITHVI_BANDS, cfg_frames, 0), "pth")


def test_prithvi_frame_outside_the_checkpoint_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="frame 3 is not one of the checkpoint's 3 frame"):
        WeightsConfig(path="p.pt", layout="prithvi", frames=3, frame=3)


def test_prithvi_pos_embed_is_resampled_for_another_crop_size() -> None:
    state, _ = prithvi_checkpoint(frames=3)
    cfg = vit_cfg(PRITHVI_BANDS, 3, "mean")
    enc = build_encoder(cfg, 64)
    load_encoder_weights(enc, read_checkpoint(save_safetensors(state), "p"), cfg.weights, cfg.bands)
    assert enc.backbone.pos_embed.shape == (1, 1 + 64, 32)


def test_pretrained_encoder_round_trips_through_the_satlas_loader() -> None:
    cfg = EncoderConfig(bands=OUR_BANDS, embed_dim=16, mean=[1.0] * 4, std=[2.0] * 4)

    def tiles(n, rng):
        return rng.normal(size=(n, 4, 32, 32)).astype("float32")

    data, history = pretrain_encoder(cfg, 32, tiles, PretrainConfig(epochs=2, steps_per_epoch=2, batch_size=2,
                                                                    mask_patch_px=8), 0, torch.device("cpu"))
    assert len(history) == 2 and all(h > 0 for h in history)
    ckpt = read_checkpoint(data, "pretrained.safetensors")
    assert all(k.startswith("backbone.backbone.features.") for k in ckpt.tensors)
    target = EncoderConfig(bands=OUR_BANDS[::-1], embed_dim=16)
    enc = build_encoder(target, 32)
    info = load_encoder_weights(enc, ckpt, WeightsConfig(path="p"), target.bands)
    assert torch.equal(enc.stem.weight, ckpt.tensors["backbone.backbone.features.0.0.weight"][:, [3, 2, 1, 0]])
    assert info.mean == [1.0] * 4
    with pytest.raises(WeightsError, match="was made for bands"):
        load_encoder_weights(enc, ckpt, WeightsConfig(path="p", bands=["a", "b", "c", "d"]), target.bands)


def test_own_checkpoint_refuses_another_band_set() -> None:
    cfg = EncoderConfig(bands=["elevation", "slope"], embed_dim=16)
    data = encoder_checkpoint_bytes(build_encoder(cfg, 32), cfg)
    other = EncoderConfig(bands=["elevation", "twi"], embed_dim=16)
    with pytest.raises(WeightsError, match="'twi'"):
        load_encoder_weights(build_encoder(other, 32), read_checkpoint(data, "cov.safetensors"),
                             WeightsConfig(path="cov.safetensors"), other.bands)


def test_pretraining_vit_or_bad_mask_patch_is_refused() -> None:
    with pytest.raises(TrainingError, match="swin_v2"):
        pretrain_encoder(EncoderConfig(arch="vit", bands=["a"]), 32, None, PretrainConfig(), 0, torch.device("cpu"))
    with pytest.raises(TrainingError, match="mask_patch_px"):
        pretrain_encoder(EncoderConfig(bands=["a"]), 32, None, PretrainConfig(mask_patch_px=6), 0,
                         torch.device("cpu"))
