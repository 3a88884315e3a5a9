"""`misomap cube build` on a real dask-gateway cluster matches a local threaded build byte for byte."""

from __future__ import annotations

from pathlib import Path

from cube_fixtures import cube_section, write_source_world

from misomap.config import config_from_dict
from misomap.jobs.build_cube import run_build_cube


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_gateway_build_matches_a_local_build(stac_api_factory, gateway_server, tmp_path, monkeypatch):
    world = write_source_world(tmp_path / "world")
    url = stac_api_factory(world.stac_files)
    local, remote = tmp_path / "local.zarr", tmp_path / "remote.zarr"
    run_build_cube(config_from_dict({"stac": {"url": url}, "cube": cube_section(str(local))}))
    monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", gateway_server.password)
    result = run_build_cube(config_from_dict({"stac": {"url": url}, "gateway": {"address": gateway_server.address},
                                              "cube": cube_section(str(remote))}))
    assert result.chunks_built == result.chunks_total == 6
    assert _tree(remote) == _tree(local)
    assert Path(str(remote) + ".quicklook.png").read_bytes() == Path(str(local) + ".quicklook.png").read_bytes()
