"""The walk from nothing to a map outside the demo world, exactly as docs/own-area.md tells it:
`init` on the Planetary Computer layout (real item JSON, served by rustac, assets as local COGs),
`import-pedons` on Lab Data Mart-layout tables, `cube build`, `train-rf`, `predict`, `verify`.
Nothing is edited by hand between the commands."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from misomap.config import load_config
from tests.support.walk_catalog import AREA, walk_catalog
from tests.test_bad_inputs import run_in_process

PEDONS = Path(__file__).parents[1] / "data" / "pedons"


@pytest.mark.slow
def test_walk_from_nothing_to_a_map(tmp_path, stac_api_factory, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder, as a new user starts
    url = stac_api_factory(walk_catalog(tmp_path / "catalog"))
    area = ",".join(f"{v:g}" for v in AREA)
    steps = [
        ["init", "--area", area, "--catalog", "planetary-computer", "--resolution", "30", "--years", "2019",
         "--chunk", "64", "--stac-url", url, "--workdir", "walk", "--out", "run.yaml", "--check"],
        ["config-check", "-c", "run.yaml"],
        ["plan", "-c", "run.yaml"],
        ["import-pedons", str(PEDONS / "kssl" / "lab_combine_nasis_ncss.csv"),
         str(PEDONS / "kssl" / "lab_layer.csv"), "--layout", "kssl", "-c", "run.yaml"],
        ["cube", "build", "-c", "run.yaml"],
        ["train-rf", "-c", "run.yaml"],
        ["predict", "-c", "run.yaml"],
        ["verify", "walk/maps/rf", "-c", "run.yaml"],
        ["train-miso", "-c", "run.yaml", "--map"],
        ["verify", "walk/maps/miso", "-c", "run.yaml"],
    ]
    seconds = {}
    for args in steps:
        t0 = time.perf_counter()
        code, text = run_in_process(args, capsys)
        seconds[" ".join(args[:2]) if args[0] in ("cube", "verify") else args[0]] = round(time.perf_counter() - t0, 1)
        assert code == 0, f"misomap {' '.join(args)}:\n{text}"
    print("walk step seconds:", seconds)

    cfg = load_config("run.yaml")
    assert cfg.cube is not None and cfg.cube.crs == "EPSG:3338" and cfg.stac.url == url
    assert "sign" not in yaml.safe_load(Path("run.yaml").read_text())["cube"]  # a mirror: nothing to sign
    assert Path("walk/labels/pedons.report.csv").exists()

    m = xr.open_zarr("walk/maps/rf/map.zarr")
    pf = m["permafrost_class"].values
    x = m["x"].values
    west, east = pf[:, x < x.mean() - 1500], pf[:, x > x.mean() + 1500]
    # the fixtures: permafrost east of -147.85 (higher ground), none west of it
    assert (east[east != 255] == 1).mean() > 0.9
    assert (west[west != 255] == 0).mean() > 0.9
    so = m["soil_order_class"].values
    gelisols = 2  # misomap.core.classes.SOIL_ORDERS index
    assert (so[:, x > x.mean() + 1500] == gelisols).mean() > 0.8
    assert np.isin(so[:, x < x.mean() - 1500], [4, 6]).mean() > 0.8  # Inceptisols / Spodosols
    # MISO at a CPU size: a whole map from its final model, with both layers filled
    miso = xr.open_zarr("walk/maps/miso/map.zarr")
    assert miso["permafrost_class"].shape == m["permafrost_class"].shape
    assert (miso["permafrost_class"].values != 255).all() and (miso["soil_order_class"].values != 255).all()
