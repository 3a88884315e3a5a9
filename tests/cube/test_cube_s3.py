"""The cube builder on the real S3 fixture: COGs read through GDAL /vsis3, the cube written to a
bucket, and the missing-bucket / refused-access cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.support.cube_fixtures import cube_section, write_source_world

from misomap.config import RunConfig, config_from_dict
from misomap.core.config_base import StorageConfig
from misomap.cube.errors import CubeStorageError
from misomap.cube.reader import open_cube
from misomap.jobs.build_cube import run_build_cube


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Credentials through the environment, as in production (never in the config)."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    return s3_server


def _config(url: str, out: str, endpoint: str) -> RunConfig:
    return config_from_dict({"stac": {"url": url}, "storage": {"endpoint_url": endpoint},
                             "cube": cube_section(out)})


def test_s3_sources_and_s3_cube_match_a_local_build(s3_env, s3fs_filesystem, s3_bucket, stac_api_factory,
                                                     tmp_path):
    world = write_source_world(tmp_path / "w")
    for (cid, item, asset), path in world.cogs.items():
        s3fs_filesystem.put_file(str(path), f"{s3_bucket}/cogs/{cid}/{item}/{asset}.tif")
    stac = tmp_path / "s3stac"
    stac.mkdir()
    files = []
    for f in world.stac_files:
        (stac / f.name).write_text(f.read_text().replace((world.root / "cogs").resolve().as_uri(),
                                                         f"s3://{s3_bucket}/cogs"))
        files.append(stac / f.name)
    assert "s3://" in files[1].read_text()
    local_url, s3_url = stac_api_factory(world.stac_files), stac_api_factory(files)

    run_build_cube(_config(local_url, str(tmp_path / "local.zarr"), s3_env.endpoint_url))
    out = f"s3://{s3_bucket}/cube.zarr"
    result = run_build_cube(_config(s3_url, out, s3_env.endpoint_url))
    assert result.chunks_built == 6
    storage = StorageConfig(endpoint_url=s3_env.endpoint_url)
    remote = open_cube(out, storage).data.values
    np.testing.assert_array_equal(remote, open_cube(str(tmp_path / "local.zarr"), StorageConfig()).data.values)
    assert np.isfinite(remote[:, :, :40]).mean() > 0.9
    assert s3fs_filesystem.exists(f"{s3_bucket}/cube.zarr.quicklook.png")
    assert s3fs_filesystem.exists(f"{s3_bucket}/cube.zarr.progress/0.0.json")


def test_missing_bucket_is_named(s3_env, stac_api_factory, tmp_path):
    world = write_source_world(tmp_path / "w")
    cfg = _config(stac_api_factory(world.stac_files), "s3://no-such-bucket-xyz/cube.zarr", s3_env.endpoint_url)
    with pytest.raises(CubeStorageError, match="bucket 'no-such-bucket-xyz' does not exist"):
        run_build_cube(cfg)


def test_refused_access_is_named(s3_env, s3_bucket, stac_api_factory, tmp_path, monkeypatch):
    world = write_source_world(tmp_path / "w")
    cfg = _config(stac_api_factory(world.stac_files), f"s3://{s3_bucket}/cube.zarr", s3_env.endpoint_url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(CubeStorageError, match=f"access to bucket '{s3_bucket}' .* refused"):
        run_build_cube(cfg)
    assert not Path(tmp_path / "cube.zarr").exists()
