"""Logging set up once, by the command-line program."""

import logging

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once with a compact, timestamped format."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in ("botocore", "urllib3", "s3fs", "fsspec", "rasterio", "aiobotocore", "asyncio",
                  "distributed", "dask_gateway"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
