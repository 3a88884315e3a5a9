"""misomap: statewide fine-scale soil and permafrost mapping on Zarr datacubes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("misomap")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
