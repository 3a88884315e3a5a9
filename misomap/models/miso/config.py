"""MISO configuration: encoders, pretrained weights, LIIF, location encoder, contrastive alignment,
heads, crops, pretraining and training — one frozen section of the run configuration."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from misomap.core.classes import SOIL_ORDERS  # noqa: F401 - the soil-order head's class order
from misomap.core.config_base import Location, StrictModel

SATLAS_S2_BANDS: tuple[str, ...] = ("red", "green", "blue", "rededge1", "rededge2", "rededge3",
                                    "nir", "swir16", "swir22")
"""Channel order of SatlasPretrain Sentinel-2 multi-band checkpoints (TCI, B05-B08, B11, B12)."""

PRITHVI_HLS_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22")
"""Channel order of Prithvi HLS checkpoints (Blue, Green, Red, Narrow NIR, SWIR1, SWIR2)."""


class WeightsConfig(StrictModel):
    """Pretrained weights for one encoder, read by the job from a local path or s3://.

    `bands` is the checkpoint's channel order, named like the encoder's bands; the loader picks and
    reorders the first-layer channels to the encoder's bands and refuses a checkpoint that lacks one.
    For misomap's own checkpoints the bands are also stored in the file and checked.
    """

    path: Location
    layout: Literal["satlas", "prithvi"] = "satlas"
    bands: list[str] | None = None
    strict: bool = True
    frames: int = Field(1, ge=1)
    """Prithvi: the frames the checkpoint was trained on (v1 Prithvi-100M: 3, Prithvi-EO-2.0: 4;
    both tubelet 1). Its position embedding holds frames/tubelet temporal slices of the patch grid."""
    frame: int | Literal["mean"] = "mean"
    """Prithvi: which temporal slice of the position embedding the single input image takes (an
    index), or their mean."""

    @model_validator(mode="after")
    def _frame(self) -> WeightsConfig:
        if isinstance(self.frame, int) and not 0 <= self.frame < self.frames:
            raise ValueError(f"frame {self.frame} is not one of the checkpoint's {self.frames} frame(s)")
        return self


class EncoderConfig(StrictModel):
    """One hierarchical encoder; `bands` are cube band names (prefixes like `s2_summer_` allowed).

    `mean`/`std` normalise each band (NaN nodata becomes 0 after normalisation); when omitted, the
    job fills them from the training pixels.
    """

    arch: Literal["swin_v2", "vit"] = "swin_v2"
    bands: list[str]
    embed_dim: int = 24
    depths: list[int] = Field(default_factory=lambda: [1, 1, 1, 1])
    num_heads: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    window_size: int = 4
    patch_size: int = 4
    vit_depth: int = 4
    vit_heads: int = 2
    drop_path: float = 0.0
    mean: list[float] | None = None
    std: list[float] | None = None
    clip: Literal["none", "training"] = "none"
    """`training`: clamp each band to the range of its values at the pedons a model trains on
    (`low`/`high`, filled by the job for every fold and for the final model), so a place beyond
    anything seen in training (a colder held-out region) reads as the nearest edge of what was seen,
    as a tree ensemble extrapolates, instead of wherever the network's layers carry it."""
    low: list[float] | None = None
    high: list[float] | None = None
    weights: WeightsConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> EncoderConfig:
        if not self.bands:
            raise ValueError("an encoder needs at least one band")
        if self.arch == "swin_v2" and len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        if (self.low is None) != (self.high is None):
            raise ValueError("low and high clamp bounds go together")
        for name in ("mean", "std", "low", "high"):
            v = getattr(self, name)
            if v is not None and len(v) != len(self.bands):
                raise ValueError(f"{name} has {len(v)} values for {len(self.bands)} bands")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self

    @classmethod
    def swin_v2_b(cls, bands: list[str]) -> EncoderConfig:
        """The paper-scale encoder (torchvision swin_v2_b: 128 wide, depths 2-2-18-2, window 8)."""
        return cls(bands=bands, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                   window_size=8, drop_path=0.5)


class LocationConfig(StrictModel):
    """Space2Vec grid-cell features of EPSG:3338 coordinates scaled to [-1, 1] by `bounds`.

    Wavelengths are fractions of the region's extent (the longer side of `bounds`): the shortest
    defaults to 1/8 of it, so the encoder describes broad gradients (climate, latitude) and cannot
    memorise single pedon neighbourhoods, which do not transfer to held-out regions.
    """

    enabled: bool = True
    role: Literal["alignment", "input"] = "alignment"
    """How location enters the model. `alignment`: only through the contrastive loss that aligns
    each point's visual embedding with its location embedding, so training learns where things are
    but a prediction reads only the pixels and covariates (a held-out region's coordinates, never
    seen in training, cannot steer it). `input`: the embedding is also added to what the heads read
    (the wave-1 design; the `location_input` ablation). Checkpoints written before this field
    existed were `input` models and load as such."""
    num_scales: int = 16
    min_wavelength: float = Field(default=0.125, gt=0)
    max_wavelength: float = Field(default=2.0, gt=0)
    hidden: int = 64
    layers: int = 2
    bounds: tuple[float, float, float, float] | None = None
    """xmin, ymin, xmax, ymax in EPSG:3338 metres; None = the cube's bounds (set by the job)."""


class LiifConfig(StrictModel):
    """The implicit query of the encoders' stage maps at continuous points."""

    hidden: int = 64
    pixel_skip: bool = True
    """Also feed the normalised input bands of the query pixel ("stage 0"): the stage maps have a
    stride of 4 or more and blur away what the pixel itself says."""


class ContrastiveConfig(StrictModel):
    """Symmetric InfoNCE between imagery/covariate and visual/location query embeddings."""

    enabled: bool = True
    temperature: float = 0.1
    weight: float = 0.1


class LossConfig(StrictModel):
    """Tasks and their losses."""

    tasks: list[Literal["permafrost", "soil_order"]] = Field(
        default_factory=lambda: ["permafrost", "soil_order"])
    permafrost_loss: Literal["bce", "focal"] = "bce"
    focal_gamma: float = 2.0
    class_weights: Literal["none", "balanced"] = "none"
    """Balanced = losses weighted by inverse class frequency of the training labels. The job sets
    it from `evaluation.class_weighting`, the one rule the RF follows too."""
    pixel_head: float = Field(0.0, ge=0)
    """Weight of an auxiliary loss: task heads on the pixel skip's embedding alone (the query pixel's
    own bands, what a per-pixel model such as the RF reads), so the pixel path learns each class's
    band signature directly. Training only: predictions and maps read the main heads. 0 = off."""


class CropConfig(StrictModel):
    """Training crops: size and jitter in pixels, query points per crop."""

    size_px: int = 64
    jitter_px: int = 16
    label_slots: int = 5
    pseudo_points: int = 10
    grid: int = 6
    unlabelled_fraction: float = 0.5
    min_valid_fraction: float = 0.2
    dihedral: bool = False
    """Turn each training crop (labelled and unlabelled) to one of its 8 orientations (flips and a
    transpose), drawn per crop, its query points moved with it: a rare class's few pedons come in
    eight spatial contexts instead of one. The query pixel's own bands are unchanged, and so is
    every prediction path (cross-validation and maps read unturned tiles)."""


class TrainConfig(StrictModel):
    """Optimiser, schedule, early stopping and devices."""

    epochs: int = 30
    batch_size: int = 16
    steps_per_epoch: int | None = None
    """Optimiser steps per epoch (one validation each); None = one pass over the labelled crops."""
    max_steps: int | None = None
    """Stop after this many optimiser steps in all (the schedule decays to it); None = no cap."""
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: int = 1
    patience: int = 6
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True
    threads: int | None = None
    class_balance: float = Field(0.0, ge=0, le=1)
    """Each labelled query's loss weighs its class's share of the task's training labels to the
    power −class_balance (soil-order class weights, the permafrost `pos_weight`; `TaskLoss.
    fit_weights`); 0 = unweighted. The job sets it from `evaluation.class_balance`, the one rule
    the RF's sample weights follow too."""
    cube_cache_mb: int = Field(128, ge=16)
    """Decoded cube chunks kept per encoder while reading training crops (LRU): bounds training
    memory whatever the cube's size (bench/bench_miso_train.py)."""


class PretrainConfig(StrictModel):
    """Self-supervised SimMIM pretraining of the Swin-V2 encoders on unlabelled cube tiles."""

    epochs: int = 10
    steps_per_epoch: int = 20
    batch_size: int = 16
    mask_ratio: float = 0.6
    mask_patch_px: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    output: Location | None = None
    """Where the pretrained encoders go; None = `<workdir>/miso/pretrained`."""


Ablation = Literal["no_contrastive", "no_location", "no_pretraining", "location_input"]
"""Variants cross-validated beside the full model: a part removed, or (`location_input`) location
fed to the heads as well as aligned."""
ABLATIONS: tuple[str, ...] = get_args(Ablation)
Variant = Literal["miso", Ablation]
"""The full model (`miso`) or one of the ablations."""
SELECTED = "miso_selected"
"""The model folder of MISO's nested-CV predictions under `design` (per test fold, the chosen
candidate's): what the claim is scored on when a run chooses the design."""


class DesignConfig(StrictModel):
    """Choose MISO's design by nested cross-validation, never by the test folds: for every test fold
    each candidate is cross-validated again inside that fold's training part, on the same scheme
    (a leave-one-region-out fold's inner folds leave out one training region each), and the fold
    is predicted by the candidate with the best mean inner validation score. The map model takes
    the candidate with the best mean inner score over the test folds of `map_scheme`."""

    candidates: list[Variant] = Field(min_length=2)
    map_scheme: str = "region"
    """The scheme whose inner scores choose the map model's design (the map is read far from the
    pedons, so by default the leave-one-region-out scheme)."""
    inner_folds: int = Field(default=2, ge=1)
    """Inner folds per test fold: the largest ones of the training part (ties to the lower id)."""
    min_share: float = Field(default=0.05, gt=0, lt=1)
    """An inner fold holds at least this share of the training part's pedons (a region of 11
    pedons cannot score a design)."""

    @model_validator(mode="after")
    def _distinct(self) -> "DesignConfig":
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"miso.design.candidates {self.candidates} repeats a candidate")
        return self


class MisoConfig(StrictModel):
    """The MISO model and how to pretrain, train and evaluate it."""

    imagery: EncoderConfig
    covariates: EncoderConfig | None = None
    feature_dim: int = 64
    liif: LiifConfig = LiifConfig()
    location: LocationConfig = LocationConfig()
    contrastive: ContrastiveConfig = ContrastiveConfig()
    loss: LossConfig = LossConfig()
    crops: CropConfig = CropConfig()
    train: TrainConfig = TrainConfig()
    pretrain: PretrainConfig = PretrainConfig()
    schemes: list[str] | None = None
    """Fold schemes (columns of folds.parquet) to evaluate; None = all."""
    max_folds: int | None = Field(default=None, ge=1)
    """Cross-validate only the N largest test folds of each scheme (a quick demo); None = all."""
    ablations: list[Ablation] = Field(default_factory=list)
    include_full: bool = True
    """Cross-validate the full model; false runs only the ablations (e.g. in a second process
    beside a run of the full model: each model has its own folder, the comparison takes all)."""
    final_model: bool = True
    """After cross-validation, train one model on every labelled pedon (nothing held out) for the
    map job, for the median step count the full model's cross-validation selected (under `design`,
    the chosen candidate's)."""
    design: DesignConfig | None = None
    """Choose among variants by nested cross-validation (each candidate is cross-validated as well
    as the ablations); the chosen predictions are reported as `miso_selected`."""

    @model_validator(mode="after")
    def _pixel_head(self) -> "MisoConfig":
        if self.loss.pixel_head > 0 and not self.liif.pixel_skip:
            raise ValueError("miso.loss.pixel_head trains heads on the pixel skip: set liif.pixel_skip "
                             "to true or pixel_head to 0")
        return self
