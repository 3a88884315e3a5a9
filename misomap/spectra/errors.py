"""Typed errors of the spectral part; each message names the sample, sensor or property at fault."""

from misomap.core.errors import MisomapError


class SpectralError(MisomapError):
    """Base class of spectral-library and spectral-model errors."""


class SpectralGridError(SpectralError):
    """Spectra on an axis that cannot be resampled onto the model's grid."""


class SpectralValueError(SpectralError):
    """Spectra with NaNs, negative reflectance or other impossible values."""


class MissingPropertyError(SpectralError):
    """A property the run asks for is not in the library."""


class SampleIdMismatchError(SpectralError):
    """NIR and MIR sample ids do not pair up."""


class LibraryFormatError(SpectralError):
    """A spectral library on Zarr is missing a part or has inconsistent shapes."""
