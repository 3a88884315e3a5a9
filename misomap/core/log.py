"""Logging set up once, by the command-line program: misomap's own messages and progress bars on a
quiet terminal; the libraries' chatter only with --log-level DEBUG."""

import logging
import os
import warnings

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Libraries that log at INFO for every connection, request or worker start.
NOISY = ("botocore", "urllib3", "s3fs", "fsspec", "rasterio", "aiobotocore", "asyncio", "distributed",
         "dask", "dask_gateway", "tornado", "bokeh", "numba", "matplotlib", "PIL")


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once with a compact, timestamped format.

    The noisy libraries stay at WARNING unless the level is DEBUG — in this process and in the dask
    worker processes it starts (they read `DASK_LOGGING__*` from the environment when they import
    distributed, before any of our code runs in them)."""
    root_level = getattr(logging, level.upper())
    logging.basicConfig(level=root_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    library_level = logging.DEBUG if root_level <= logging.DEBUG else max(logging.WARNING, root_level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(library_level)
    # the one third-party warning a run prints (tests filter the same by message in pyproject.toml):
    # zarr-python on every consolidated Zarr v3 store, which xarray and our readers rely on
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part in the Zarr "
                            "format 3 specification", category=UserWarning)
    # the worker processes dask starts import distributed fresh and read its log levels from here
    os.environ["DASK_LOGGING__DISTRIBUTED"] = logging.getLevelName(library_level).lower()
