"""Writing the world: COG bytes (rasterio's COG driver, fixed creation options so the same
world gives the same bytes) and a sink that puts files under a local folder or an s3:// prefix."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.io import MemoryFile

from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target, is_remote
from misomap.demo.spec import DemoWorldError

log = logging.getLogger(__name__)


def cog_bytes(data: np.ndarray, crs: str, transform: Affine, nodata: float | int | None,
              blocksize: int, scale: float | None = None, offset: float | None = None,
              resampling: str = "average") -> bytes:
    """Encode a (bands, H, W) or (H, W) array as a Cloud-Optimized GeoTIFF, deterministically."""
    arr = data[None] if data.ndim == 2 else data
    profile = {"driver": "COG", "width": arr.shape[2], "height": arr.shape[1], "count": arr.shape[0],
               "dtype": arr.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
               "blocksize": blocksize, "compress": "ZSTD", "level": 1,
               "predictor": "YES" if arr.dtype.kind in "iu" else "FLOATING_POINT",
               "overview_resampling": resampling, "num_threads": 1, "bigtiff": "NO"}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(arr)
            if scale is not None:
                dst.scales = [scale] * arr.shape[0]
                dst.offsets = [offset or 0.0] * arr.shape[0]
        return mem.read()


@dataclass
class Sink:
    """Writes files under a root (a local folder or s3://bucket/prefix) and remembers them."""

    root: str
    storage: StorageConfig | None = None
    written: list[str] = field(default_factory=list)
    _pending: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = self.root.rstrip("/")
        if not is_remote(self.root):
            self.root = str(Path(self.root.removeprefix("file://")).expanduser().resolve())
        elif not self.root.startswith("s3://"):
            raise DemoWorldError(f"cannot write the demo world to {self.root}: use a folder or s3://")
        self._fs = Target(self.root, self.storage or StorageConfig()).fs

    @property
    def root_url(self) -> str:
        """The absolute URL assets are addressed by (file:///... or s3://...)."""
        return self.root if is_remote(self.root) else Path(self.root).as_uri()

    def url(self, rel: str) -> str:
        return f"{self.root_url}/{rel}"

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write one file; remote files are batched and uploaded concurrently (see `flush`)."""
        path = f"{self.root}/{rel}"
        self.written.append(rel)
        if is_remote(self.root):
            self._pending[path] = data
            if len(self._pending) >= 64:
                self.flush()
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        except OSError as err:
            raise DemoWorldError(f"cannot write demo world file {path}: {err}") from err

    def flush(self) -> None:
        """Upload the batched remote files (s3fs sends them concurrently)."""
        if not self._pending:
            return
        try:
            self._fs.pipe(self._pending)
        except OSError as err:
            raise DemoWorldError(f"cannot write {len(self._pending)} demo world files under "
                                 f"{self.root} (first: {next(iter(self._pending))}): {err}") from err
        self._pending = {}

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())

    def prepare(self) -> None:
        """Refuse to mix two worlds: the target must be empty or an earlier demo world."""
        exists = self._fs.exists(self.root)
        if exists and self._fs.ls(self.root) and not self._fs.exists(f"{self.root}/world.json"):
            raise DemoWorldError(f"{self.root} is not empty and holds no world.json; "
                                 "pick an empty folder or prefix for the demo world")
        if exists and self._fs.exists(f"{self.root}/world.json"):
            log.info("replacing the demo world at %s", self.root)
            self._fs.rm(self.root, recursive=True)

