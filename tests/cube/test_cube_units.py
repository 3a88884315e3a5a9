"""Cube builder pieces without services: composites, config validation, chunk plan, item checks."""

from __future__ import annotations

import warnings

import numpy as np
import pystac
import pytest

from misomap.config import config_from_dict
from misomap.cube import composite
from misomap.cube.build import planned_grid
from misomap.cube.grid import plan_chunks
from misomap.cube.config import CubeConfig, SourceConfig
from misomap.cube.errors import CubeError, SourceItemError
from misomap.cube.search import check_item, load_signer
from misomap.core.errors import ConfigError

S2 = {"collection": "sentinel-2-l2a", "kind": "optical", "prefix": "s2", "bands": {"red": "red", "nir": "nir"},
      "mask_asset": "scl"}
S1 = {"collection": "sentinel-1-rtc", "kind": "radar", "prefix": "s1", "bands": {"vv": "vv"}}
DEM = {"collection": "ak-terrain", "kind": "static", "bands": {"elevation": "elevation"}}
NAN = np.nan


def cube(**kw) -> CubeConfig:
    base = {"out": "/tmp/c.zarr", "datetime": "2021-01-01/2021-12-31", "bbox": (-148.0, 64.7, -147.9, 64.75),
            "sources": [S2, S1, DEM]}
    base.update(kw)
    return CubeConfig.model_validate(base)


def test_scl_mask_drops_cloud_shadow_snow_and_unknown_classes():
    stack = np.ones((3, 2, 1, 1), np.float32)
    scl = np.array([[[9.0]], [[4.0]], [[NAN]]], np.float32)
    out = composite.scl_mask(stack, scl, (3, 8, 9, 10, 11))
    assert np.isnan(out[0]).all() and (out[1] == 1).all() and np.isnan(out[2]).all()


def test_median_ignores_nan_and_leaves_unseen_pixels_nan_without_warnings():
    stack = np.array([[[[1.0, NAN]]], [[[3.0, NAN]]], [[[NAN, NAN]]]], np.float32)  # (t=3, b=1, 1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = composite.median(stack)
    assert out[0, 0, 0] == 2.0 and np.isnan(out[0, 0, 1])


def test_geomedian_keeps_one_surface_and_rejects_outliers():
    surface = np.array([0.1, 0.3, 0.5], np.float32)
    obs = np.stack([surface, surface, surface + 0.001, np.array([0.9, 0.9, 0.9]), np.array([0.1, NAN, 0.5])])
    stack = obs[:, :, None, None].astype(np.float32)
    got = composite.geomedian(stack)[:, 0, 0]
    np.testing.assert_allclose(got, surface, atol=2e-3)
    assert np.isnan(composite.geomedian(np.full((2, 3, 1, 1), NAN, np.float32))).all()


def test_radar_mean_is_taken_in_db_not_linear():
    lin = np.array([0.01, 1.0], np.float32)[:, None, None, None]  # -20 dB and 0 dB
    assert composite.mean_db(lin)[0, 0, 0] == pytest.approx(-10.0)
    assert np.isnan(composite.mean_db(np.array([0.0, -1.0], np.float32)[:, None, None, None])).all()


def test_mosaic_takes_first_valid_layer():
    stack = np.array([[[[NAN, 1.0]]], [[[2.0, 5.0]]]], np.float32)
    np.testing.assert_array_equal(composite.mosaic(stack), [[[2.0, 1.0]]])


def test_band_names_follow_the_contract_and_rgb_default():
    c = cube(seasons={"summer": {"start": "06-15", "end": "08-15"}, "fall": {"start": "09-01", "end": "09-30"}})
    assert c.band_names() == ["s2_summer_red", "s2_summer_nir", "s2_fall_red", "s2_fall_nir",
                              "s1_summer_vv_db", "s1_fall_vv_db", "elevation"]
    assert c.rgb_bands() == ("s2_summer_red",) * 3


@pytest.mark.parametrize("change, message", [
    ({"area": "fairbanks"}, "exactly one of bbox, area, bounds"),
    ({"bbox": None, "area": "atlantis"}, "unknown area"),
    ({"seasons": {"summer": {"start": "08-15", "end": "06-15"}}}, "before its start"),
    ({"seasons": {"summer": {"start": "6-15", "end": "08-15"}}}, "MM-DD"),
    ({"sources": [S2, {**S2, "prefix": "s2"}]}, "duplicate cube band names"),
    ({"sources": [{**S1, "prefix": ""}]}, "need a `prefix`"),
    ({"sources": [{**S1, "mask_asset": "scl"}]}, "optical sources only"),
    ({"sources": [{**S2, "scaling": "guess"}]}, "scaling"),
    ({"datetime": "2021"}, "start/end"),
    ({"sign": "planetary_computer.sign"}, "module:function"),
    ({"quicklook_bands": ["a", "b", "c"]}, "not cube bands"),
])
def test_bad_cube_config_is_refused_with_the_field_named(change, message):
    data = {"cube": {"out": "/tmp/c.zarr", "datetime": "2021-01-01/2021-12-31",
                     "bbox": [-148.0, 64.7, -147.9, 64.75], "sources": [S2], **change}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_secret_in_cube_section_refused():
    with pytest.raises(ConfigError, match="looks like a secret"):
        config_from_dict({"cube": {"out": "s3://b/c.zarr", "secret": "x", "datetime": "a/b",
                                   "bbox": [-148.0, 64.7, -147.9, 64.75], "sources": [S2]}})


def test_named_area_grid_is_aligned_and_chunks_cover_it_once():
    grid = planned_grid(cube(bbox=None, area="fairbanks", resolution=30.0))
    assert grid.crs == "EPSG:3338" and grid.xmin % 30 == 0 and grid.ymax % 30 == 0
    chunks = plan_chunks(grid, 1024)
    assert sum(c.height * c.width for c in chunks) == grid.height * grid.width
    assert max(c.width for c in chunks) == 1024 and chunks[-1].col0 + chunks[-1].width == grid.width


def _item(**asset_fields) -> pystac.Item:
    item = pystac.Item("i1", None, None, pystac.utils.str_to_datetime("2021-07-01T00:00:00Z"), {})
    item.add_asset("red", pystac.Asset("file:///r.tif", extra_fields=dict(asset_fields)))
    return item


def test_check_item_turns_proj_code_into_the_epsg_stackstac_reads():
    src = SourceConfig(collection="c", kind="static", bands={"red": "red"})
    item = check_item(_item(**{"proj:code": "EPSG:32606"}), src)
    assert item.properties["proj:epsg"] == 32606
    with pytest.raises(SourceItemError, match="asset 'red': no usable projection"):
        check_item(_item(**{"proj:code": "IAU_2015:30100"}), src)


def test_signer_path_that_does_not_import_is_named():
    with pytest.raises(CubeError, match="cube.sign='no_such_module:sign'"):
        load_signer("no_such_module:sign")
