"""`misomap cube build` on a real dask-gateway cluster: failed chunks are reported, a rerun finishes
the cube, and the result matches a local threaded build byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.cube_fixtures import cube_section, write_source_world

from misomap.config import config_from_dict
from misomap.cube.errors import ChunkBuildError
from misomap.jobs.build_cube import run_build_cube


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_gateway_build_reports_failures_resumes_and_matches_a_local_build(
        stac_api_factory, gateway_server, tmp_path, monkeypatch):
    world = write_source_world(tmp_path / "world")
    url = stac_api_factory(world.stac_files)
    local, remote = tmp_path / "local.zarr", tmp_path / "remote.zarr"
    run_build_cube(config_from_dict({"stac": {"url": url}, "cube": cube_section(str(local))}))
    monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", gateway_server.password)
    monkeypatch.setattr("distributed.LocalCluster", lambda *a, **k: pytest.fail("ran locally, not on the gateway"))
    on_gateway = config_from_dict({"stac": {"url": url}, "gateway": {"address": gateway_server.address},
                                   "cube": cube_section(str(remote))})

    bad = world.cogs[("sentinel-2-l2a", "S2_B_d1", "red")]
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    with pytest.raises(ChunkBuildError, match="of 6 chunks failed") as err:
        run_build_cube(on_gateway)
    assert bad.resolve().as_uri() in str(err.value) and "chunk 0.1" in str(err.value)
    bad.write_bytes(good)

    result = run_build_cube(on_gateway)
    assert result.chunks_total == 6 and 0 < result.chunks_built < 6
    assert _tree(remote) == _tree(local)
    assert Path(str(remote) + ".quicklook.png").read_bytes() == Path(str(local) + ".quicklook.png").read_bytes()
