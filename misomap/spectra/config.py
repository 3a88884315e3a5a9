"""The `spectral` section of the run configuration: library, model sizes, training and embedding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from misomap.core.config_base import Location, StrictModel

NINE_PROPERTIES: tuple[str, ...] = (
    "total_c", "total_n", "inorganic_c", "organic_c", "ph", "cec", "clay", "silt", "sand",
)
"""The nine soil properties of the reference method (C and N in %, CEC cmol(+)/kg, texture in %)."""


class AxisSpec(StrictModel):
    """A regular spectral axis, inclusive of both ends (wavenumber cm-1 or wavelength nm)."""

    start: float
    stop: float
    step: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AxisSpec:
        if self.stop <= self.start:
            raise ValueError(f"axis stop {self.stop} must exceed start {self.start}")
        return self

    @property
    def size(self) -> int:
        """Number of channels."""
        return int(round((self.stop - self.start) / self.step)) + 1


class SyntheticSpec(StrictModel):
    """Size of the synthetic library generated when no library is configured."""

    n_samples: int = Field(default=800, ge=20)
    nir_fraction: float = Field(default=0.3, gt=0, le=1)
    repeats: int = Field(default=3, ge=1)


class VAESpec(StrictModel):
    """MIR VAE size and training schedule (kept small: spectral libraries are small)."""

    latent_dim: int = Field(default=32, ge=2)
    hidden: tuple[int, ...] = (256, 128)
    epochs: int = Field(default=60, ge=1)
    batch_size: int = Field(default=64, ge=2)
    learning_rate: float = Field(default=1e-3, gt=0)
    beta: float = Field(default=1e-3, ge=0)
    min_steps: int = Field(default=1500, ge=0)
    """Epochs are extended until at least this many optimiser steps (small libraries)."""
    finetune_steps: int = Field(default=300, ge=1)
    """Optimiser steps when a pretrained VAE is fine-tuned on the pool plus a fold's training spectra."""
    linear: bool = True
    """PCA-initialised linear encoder/decoder paths plus nonlinear residuals, trained with early stopping
    on held-out reconstruction (`fit_encoder`); False: the plain MLP VAE for the configured steps."""
    stream_above_mb: float = Field(default=2048, gt=0)
    """A pretraining library whose spectra exceed this many MB is streamed from Zarr chunk by chunk."""


class NIRSpec(StrictModel):
    """NIR encoder into the frozen MIR latent space."""

    hidden: tuple[int, ...] = (256, 128)
    epochs: int = Field(default=150, ge=1)
    batch_size: int = Field(default=32, ge=2)
    learning_rate: float = Field(default=1e-3, gt=0)
    reconstruction_weight: float = Field(default=1.0, ge=0)
    min_steps: int = Field(default=1500, ge=0)


class SpectralConfig(StrictModel):
    """Everything the spectral train / embed jobs read; paths default under the run workdir."""

    library: Location | None = None
    """A spectral library on Zarr; None means generate the synthetic one under the workdir."""
    pretrain_library: Location | None = None
    """Optional unlabelled library (Zarr, e.g. OSSL MIR) the VAE also pretrains on; streamed when large."""
    synthetic: SyntheticSpec = SyntheticSpec()
    models: Location | None = None
    """Where trained models are written and read; default <workdir>/spectral/models."""
    report: Location | None = None
    """Report folder (local); default <workdir>/spectral/report."""
    embeddings: Location | None = None
    """Output Zarr of embed-spectra; default <workdir>/spectral/embeddings.zarr."""
    properties: tuple[str, ...] = NINE_PROPERTIES
    mir_axis: AxisSpec = AxisSpec(start=600, stop=4000, step=2)
    """Widest MIR model axis; narrowed to the range the spectra cover (intersection, resampled)."""
    nir_axis: AxisSpec = AxisSpec(start=1350, stop=2550, step=2)
    vae: VAESpec = VAESpec()
    nir: NIRSpec = NIRSpec()
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    cv_folds: int = Field(default=5, ge=2)
    pls_max_components: int = Field(default=20, ge=1)
    regressors: tuple[Literal["plsr", "ridge", "mlp"], ...] = ("plsr", "mlp")
    """Downstream regressors compared on every feature set."""
    interval_alpha: float = Field(default=0.1, gt=0, lt=1)
    """Saved regressors carry CV+ prediction intervals of coverage 1 - interval_alpha (cv_folds folds);
    embed-spectra writes them beside every prediction."""
    skew_threshold: float = 1.0
    """Properties whose skewness on the training rows exceeds this are modelled as log(1+x)."""
    limesoda: tuple[str, ...] = ("H.138", "SSP.460")
    """Real LimeSoDa datasets evaluated with their own folds by train-spectral (empty: skip)."""
    limesoda_cross: bool = True
    """Also evaluate cross-set pretraining (every other LimeSoDa set of the sensor family)."""
    limesoda_step: float | None = Field(default=None, gt=0)
    """Channel spacing of the LimeSoDa model axes (None: 4 cm-1 / 4 nm); coarser is faster."""
    pool_min_coverage: float = Field(default=0.85, gt=0, le=1)
    """A set joins another's pretraining pool when it covers this fraction of that set's range."""
    embed_sensor: Literal["mir", "nir"] = "mir"
    chunk_size: int = Field(default=1024, ge=1)
    predict: bool = True
    convert: bool = True
    """With embed_sensor 'nir': also write the NIR->MIR converted spectra."""
    torch_threads: int = Field(default=1, ge=1)
    """CPU threads for training; the networks are small, and more threads thrash shared cores."""
    local_workers: int = Field(default=2, ge=1)
    """Workers of the local dask cluster (gateway.workers applies on dask-gateway)."""
    local_processes: bool = True
    """Local workers are processes; False runs them as threads of this process (small jobs)."""
