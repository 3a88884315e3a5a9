"""Cost of publishing a new map version when one chunk changed, one command:
`.venv/bin/python bench/bench_publish.py` (starts its own SeaweedFS on loopback).

A map-shaped product (`--side` px, the map's 15 uint8 layers as 8 variables, chunks of 256 px, plus
small COG-sized files) is published as version 1; then one chunk of one layer changes and it is
published again, (a) into a root that holds version 1, where every unchanged file is copied within
the store (S3 CopyObject / a hard link) instead of uploaded, and (b) into an empty root, where every
file is uploaded (what each publish cost before). Prints seconds, files and bytes sent through the
client for both, on the S3 server and on a local disk, and the ratios. Asserts no times.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np


def write_product(root: Path, side: int, seed: int) -> None:
    """A product folder: map.zarr (8 uint8 variables, one with 7 classes) with a complete mark, cogs/."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    data = {f"layer{i}": (("y", "x"), rng.integers(0, 200, (side, side), dtype=np.uint8)) for i in range(7)}
    data["per_class"] = (("c", "y", "x"), rng.integers(0, 200, (7, side, side), dtype=np.uint8))
    ds = xr.Dataset(data, attrs={"misomap_complete": "bench"})
    ds.chunk({"y": 256, "x": 256, "c": 7}).to_zarr(root / "map.zarr", zarr_format=3, mode="w", consolidated=True)
    (root / "cogs").mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (root / "cogs" / f"layer{i}.tif").write_bytes(rng.bytes(side * side // 4))


def change_one_chunk(root: Path) -> None:
    import zarr

    arr = zarr.open_array(root / "map.zarr", path="layer0", mode="r+")
    arr[:256, :256] = 255 - np.asarray(arr[:256, :256])


class Counting:
    """Counts the bytes a filesystem's pipe_file sends from the client."""

    def __init__(self) -> None:
        self.files = self.bytes = 0

    def __enter__(self):
        from fsspec.implementations.local import LocalFileSystem
        from fsspec.spec import AbstractFileSystem
        from s3fs import S3FileSystem

        self.patched = []
        for cls in (S3FileSystem, LocalFileSystem, AbstractFileSystem):
            for name in ("pipe_file", "_pipe_file"):
                orig = cls.__dict__.get(name)
                if orig is None:
                    continue

                def wrap(fs, path, value, *a, _orig=orig, _counter=self, **kw):
                    _counter.files += 1
                    _counter.bytes += len(value)
                    return _orig(fs, path, value, *a, **kw)

                setattr(cls, name, wrap)
                self.patched.append((cls, name, orig))
        return self

    def __exit__(self, *exc) -> None:
        for cls, name, orig in self.patched:
            setattr(cls, name, orig)


def publish_once(src: str, root: str, storage) -> tuple[float, Counting]:
    from misomap.publish import versions

    with Counting() as c:
        t = time.perf_counter()
        versions.publish(src, root, storage, "bench", keep=3, bbox=(-150.0, 64.0, -149.0, 65.0))
        return time.perf_counter() - t, c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=2048, help="map side (px); chunks of 256 px")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import s3fs

    from misomap.core.config_base import StorageConfig
    from misomap.publish import versions
    from misomap.services.s3 import seaweedfs_s3

    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    write_product(tmp / "v1", args.side, 0)
    write_product(tmp / "v2", args.side, 0)
    change_one_chunk(tmp / "v2")
    n_files = sum(1 for p in (tmp / "v2").rglob("*") if p.is_file())
    mib = sum(p.stat().st_size for p in (tmp / "v2").rglob("*") if p.is_file()) / 2**20
    print(f"product: {n_files} files, {mib:.0f} MiB; one 256² chunk of one layer changed")
    with seaweedfs_s3(tmp / "s3") as (s3, _):
        import os

        os.environ.update(s3.env())
        fs = s3fs.S3FileSystem(**s3.storage_options())
        fs.mkdir("bench")
        storage = StorageConfig(endpoint_url=s3.endpoint_url)
        results = {}
        for where in ("s3", "local"):
            for name in ("v1", "v2"):
                if where == "s3":
                    fs.put(str(tmp / name), f"bench/src/{name}", recursive=True)
            src = {n: (f"s3://bench/src/{n}" if where == "s3" else str(tmp / n)) for n in ("v1", "v2")}
            root = f"s3://bench/{where}-pub" if where == "s3" else str(tmp / "local-pub")
            fresh = f"s3://bench/{where}-fresh" if where == "s3" else str(tmp / "local-fresh")
            publish_once(src["v1"], root, storage)
            reuse_s, reuse = publish_once(src["v2"], root, storage)
            versions.verify(root, storage, versions.latest(root, storage))  # whole, every file as its manifest says
            full_s, full = publish_once(src["v2"], fresh, storage)
            results[where] = (reuse_s, reuse, full_s, full)
            print(f"{where:<5} new version, unchanged files copied in the store: {reuse_s:.2f} s, "
                  f"{reuse.files} files / {reuse.bytes / 2**20:.2f} MiB sent; every file uploaded: {full_s:.2f} s, "
                  f"{full.files} files / {full.bytes / 2**20:.2f} MiB sent -> x{full_s / reuse_s:.1f} faster, "
                  f"x{full.bytes / max(reuse.bytes, 1):.0f} fewer bytes", flush=True)
    print(json.dumps({k: {"reuse_s": v[0], "full_s": v[2]} for k, v in results.items()}))


if __name__ == "__main__":
    main()
