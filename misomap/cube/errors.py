"""Typed errors of the cube builder; each message names the endpoint, item, asset, chunk or bucket."""

from misomap.core.errors import MisomapError


class CubeError(MisomapError):
    """Base class of cube-builder errors."""


class StacSearchError(CubeError):
    """The STAC search failed, returned nothing, or the endpoint did not answer."""


class SourceItemError(CubeError):
    """A found item cannot be stacked: a band is missing or projection information is unusable."""


class ChunkBuildError(CubeError):
    """One or more chunks failed (e.g. a corrupt COG); the others were written and recorded."""


class CubeStorageError(CubeError):
    """The output location cannot be written (missing bucket, access refused, foreign cube)."""


class AssetReadError(CubeError):
    """An asset (named by href) cannot be opened or read onto a chunk."""


class CorruptChunkError(CubeError):
    """A cube chunk read back differs from the digest its completion record holds (names the chunk)."""
