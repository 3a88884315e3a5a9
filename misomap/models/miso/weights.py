"""Load pretrained encoder weights from checkpoint bytes: SatlasPretrain Swin-V2 (torchvision
layout, `backbone.backbone.features.*`), Prithvi ViT-MAE (`patch_embed.proj` Conv3d, `blocks.N`,
`decoder_*`) and misomap's own pretraining output (Satlas layout plus band metadata).

The first layer's channels are picked and reordered to the encoder's bands; a checkpoint made for
another band set, or with wrong keys or shapes, raises WeightsError naming them. The job reads the
file (local or s3://); nothing here touches storage.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor

from misomap.models.miso.config import EncoderConfig, WeightsConfig
from misomap.models.miso.encoders import Encoder, SwinV2Encoder, ViTEncoder
from misomap.models.miso.errors import WeightsError

log = logging.getLogger(__name__)

SATLAS_PREFIXES = ("backbone.backbone.", "backbone.")
PRITHVI_PREFIXES = ("model.encoder.", "encoder.", "model.")
PRITHVI_IGNORED = ("mask_token", "decoder_", "decoder.")
MAX_NAMED = 8


@dataclass(frozen=True)
class Checkpoint:
    """Tensors and string metadata read from one checkpoint file."""

    tensors: dict[str, Tensor]
    metadata: dict[str, str]
    source: str


def read_checkpoint(data: bytes, source: str) -> Checkpoint:
    """Parse safetensors bytes, or a torch file with weights_only=True (never arbitrary pickle)."""
    try:
        tensors = load_safetensors(data)
    except SafetensorError:
        pass  # not safetensors: try torch's weights-only format
    else:
        return Checkpoint(dict(tensors), safetensors_metadata(data), source)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{source}: neither safetensors nor a weights-only torch file ({err})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{source}: expected a mapping of names to tensors")
    return Checkpoint(dict(obj), {}, source)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The string metadata in a safetensors header."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    return dict(header.get("__metadata__") or {})


def encoder_checkpoint_bytes(encoder: Encoder, cfg: EncoderConfig) -> bytes:
    """Serialise an encoder in the layout its loader reads (Satlas keys for Swin-V2), with bands
    and normalisation in the metadata so a checkpoint for another band set is refused."""
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.backbone.state_dict().items()}
    if isinstance(encoder, SwinV2Encoder):
        state = {SATLAS_PREFIXES[0] + k: v for k, v in state.items()}
    meta = {"format": "misomap-encoder", "arch": cfg.arch, "bands": json.dumps(cfg.bands)}
    if cfg.mean is not None and cfg.std is not None:
        meta["mean"], meta["std"] = json.dumps(cfg.mean), json.dumps(cfg.std)
    return save_safetensors(state, metadata=meta)


@dataclass(frozen=True)
class LoadedWeights:
    """What was loaded: the checkpoint's band order and any stored normalisation."""

    source: str
    checkpoint_bands: list[str]
    mean: list[float] | None
    std: list[float] | None


def load_encoder_weights(encoder: Encoder, ckpt: Checkpoint, wcfg: WeightsConfig,
                         bands: list[str]) -> LoadedWeights:
    """Load `ckpt` into `encoder` whose input bands are `bands`; raise WeightsError on any mismatch."""
    ckpt_bands = _checkpoint_bands(ckpt, wcfg)
    if isinstance(encoder, SwinV2Encoder):
        if wcfg.layout != "satlas":
            raise WeightsError(f"{ckpt.source}: a swin_v2 encoder reads the 'satlas' layout, "
                               f"not {wcfg.layout!r}")
        state = _satlas_state(ckpt)
        stem_key = "features.0.0.weight"
    else:
        if wcfg.layout != "prithvi":
            raise WeightsError(f"{ckpt.source}: a vit encoder reads the 'prithvi' layout, not {wcfg.layout!r}")
        state = _prithvi_state(ckpt, encoder, wcfg)
        stem_key = "patch_embed.proj.weight"
    if stem_key not in state:
        raise WeightsError(f"{ckpt.source}: missing first-layer key {stem_key!r} "
                           f"(keys start {sorted(state)[:MAX_NAMED]})")
    state[stem_key] = _select_bands(state[stem_key], ckpt_bands, bands, ckpt.source)
    _check_and_load(encoder, state, ckpt.source, wcfg.strict)
    mean = json.loads(ckpt.metadata["mean"]) if "mean" in ckpt.metadata else None
    std = json.loads(ckpt.metadata["std"]) if "std" in ckpt.metadata else None
    if mean is not None:
        idx = [_band_index(b, ckpt_bands, ckpt.source) for b in bands]
        mean, std = [mean[i] for i in idx], [std[i] for i in idx]
    log.info("loaded %s (%s layout) for bands %s", ckpt.source, wcfg.layout, bands)
    return LoadedWeights(ckpt.source, ckpt_bands, mean, std)


def _checkpoint_bands(ckpt: Checkpoint, wcfg: WeightsConfig) -> list[str]:
    stored = json.loads(ckpt.metadata["bands"]) if "bands" in ckpt.metadata else None
    if stored is not None and wcfg.bands is not None and stored != wcfg.bands:
        raise WeightsError(f"{ckpt.source} was made for bands {stored}, the config says {wcfg.bands}")
    bands = stored or wcfg.bands
    if bands is None:
        raise WeightsError(f"{ckpt.source} does not record its bands: set weights.bands in the config "
                           "to the checkpoint's channel order")
    return bands


def _band_index(band: str, ckpt_bands: list[str], source: str) -> int:
    for i, b in enumerate(ckpt_bands):
        if band == b or band.endswith("_" + b):
            return i
    raise WeightsError(f"{source} was made for bands {ckpt_bands}; encoder band {band!r} is not "
                       "among them (use a checkpoint for this band set or change the encoder's bands)")


def _select_bands(weight: Tensor, ckpt_bands: list[str], bands: list[str], source: str) -> Tensor:
    if weight.shape[1] != len(ckpt_bands):
        raise WeightsError(f"{source}: first layer has {weight.shape[1]} input channels but the "
                           f"checkpoint's bands are {len(ckpt_bands)}: {ckpt_bands}")
    idx = [_band_index(b, ckpt_bands, source) for b in bands]
    return weight[:, idx].contiguous()


def _strip(state: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    for p in prefixes:
        if any(k.startswith(p) for k in state):
            return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
    return dict(state)


def _satlas_state(ckpt: Checkpoint) -> dict[str, Tensor]:
    state = _strip(ckpt.tensors, SATLAS_PREFIXES)
    kept = {k: v for k, v in state.items() if k.startswith("features.")}
    if not kept:
        raise WeightsError(f"{ckpt.source}: no Swin-V2 'features.*' keys under 'backbone.backbone.' "
                           f"(keys start {sorted(ckpt.tensors)[:MAX_NAMED]})")
    return kept


def _prithvi_state(ckpt: Checkpoint, encoder: ViTEncoder, wcfg: WeightsConfig) -> dict[str, Tensor]:
    """Prithvi (v1 top-level keys, v2 under `encoder.`) to a 2-D timm ViT: the Conv3d patch kernel
    (D, C, tubelet, p, p) summed over its tubelet (one image repeated across it), and the position
    embedding (1, prefix + frames/tubelet × grid, D) cut to one temporal slice (`wcfg.frame`) or
    their mean, then resampled to the encoder's patch grid."""
    from timm.layers import resample_abs_pos_embed

    state = _strip(ckpt.tensors, PRITHVI_PREFIXES)
    state = {k: v for k, v in state.items() if not k.startswith(PRITHVI_IGNORED)}
    w = state.get("patch_embed.proj.weight")
    tubelet = 1
    if w is not None and w.ndim == 5:
        tubelet = w.shape[2]
        state["patch_embed.proj.weight"] = w.sum(dim=2)
    if wcfg.frames % tubelet:
        raise WeightsError(f"{ckpt.source}: patch_embed.proj.weight {tuple(w.shape)} has tubelet {tubelet}, "
                           f"which does not divide weights.frames={wcfg.frames}")
    slices = wcfg.frames // tubelet
    pos = state.get("pos_embed")
    target = encoder.backbone.pos_embed
    if pos is not None and pos.ndim == 3 and pos.shape[-1] == target.shape[-1]:
        n_prefix = encoder.backbone.num_prefix_tokens
        tokens = pos.shape[1] - n_prefix
        grid_tokens = tokens // slices
        side = round(grid_tokens ** 0.5)
        if tokens % slices or side * side != grid_tokens:
            raise WeightsError(
                f"{ckpt.source}: pos_embed {tuple(pos.shape)} holds {tokens} patch tokens, not "
                f"{slices} frame(s) × a square grid (weights.frames={wcfg.frames}, tubelet {tubelet}"
                f"{', patch_embed.proj.weight ' + str(tuple(w.shape)) if w is not None else ''}): set "
                "weights.frames to the checkpoint's (Prithvi v1: 3, Prithvi-EO-2.0: 4)")
        grid = pos[:, n_prefix:].reshape(1, slices, grid_tokens, pos.shape[-1])
        if wcfg.frame == "mean":
            grid = grid.mean(dim=1)
        else:
            if wcfg.frame >= slices:
                raise WeightsError(f"{ckpt.source}: weights.frame={wcfg.frame} but pos_embed "
                                   f"{tuple(pos.shape)} holds {slices} temporal slice(s)")
            grid = grid[:, wcfg.frame]
        pos = torch.cat([pos[:, :n_prefix], grid], dim=1)
        if pos.shape[1] != target.shape[1]:
            pos = resample_abs_pos_embed(pos, new_size=list(encoder.backbone.patch_embed.grid_size),
                                         old_size=[side, side], num_prefix_tokens=n_prefix)
        state["pos_embed"] = pos
    return state


def _check_and_load(encoder: Encoder, state: dict[str, Tensor], source: str, strict: bool) -> None:
    expected = encoder.backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:MAX_NAMED]}" + (" ..." if len(missing) > MAX_NAMED else ""))
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:MAX_NAMED]}"
                        + (" ..." if len(unexpected) > MAX_NAMED else ""))
    if wrong:
        problems.append(f"wrong shapes {wrong[:MAX_NAMED]}" + (" ..." if len(wrong) > MAX_NAMED else ""))
    if problems and (strict or wrong):
        raise WeightsError(f"{source} does not fit the encoder (width/depth/bands?): " + "; ".join(problems))
    if problems:
        log.warning("%s: loading non-strictly: %s", source, "; ".join(problems))
    encoder.backbone.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
