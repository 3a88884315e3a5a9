"""Typed exceptions shared across misomap; each message names the thing at fault."""


class MisomapError(Exception):
    """Base class of every error misomap raises on purpose."""


class ConfigError(MisomapError):
    """The run configuration is invalid; the message names the bad field."""


class ServiceError(MisomapError):
    """A local service (S3, STAC API, dask-gateway) failed to start or answer; carries its log."""
