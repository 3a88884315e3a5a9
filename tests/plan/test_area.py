"""`misomap init`'s area: lon/lat checks, the antimeridian, and the grid on the statewide plan."""

from __future__ import annotations

import json
import math

import pytest
from pyproj import Transformer

from misomap.plan.area import AreaError, area_grid, parse_area
from misomap.plan.plan import statewide_grid

FAIRBANKS = (-148.2, 64.7, -147.4, 65.0)


def test_bbox_parsed_in_lon_lat_order():
    assert parse_area("-148.2, 64.7, -147.4, 65.0") == FAIRBANKS


@pytest.mark.parametrize("text, message", [
    ("-147.4,64.7,-148.2,65.0", "west -147.4 is not west of east -148.2"),
    ("-148.2,65.0,-147.4,64.7", "south 65 is not below north 64.7"),
    ("64.7,-148.2,65.0,-147.4", "looks like lat,lon"),
    ("270000,1640000,320000,1690000", "not lon/lat degrees"),
    ("-148.2,64.7,-147.4", "has 3 numbers"),
    ("fairbanks", "neither west,south,east,north"),
    ("-148.2,nan,-147.4,65", "non-finite"),
    ("172.5,51.5,-178.0,53.0", "crosses the antimeridian"),
])
def test_bad_bbox_named(text, message):
    with pytest.raises(AreaError, match=message):
        parse_area(text)


def test_antimeridian_refusal_gives_both_halves():
    with pytest.raises(AreaError) as err:
        parse_area("172.5,51.5,-178,53")
    assert "--area 172.5,51.5,180,53" in str(err.value) and "--area -180,51.5,-178,53" in str(err.value)
    # each half on its own is a valid area with its own EPSG:3338 grid on land tiles (Aleutians)
    for half in ("172.5,51.5,180,53", "-180,51.5,-178,53"):
        g = area_grid(parse_area(half), 30.0, 512)
        assert g.alaska and g.tiles


def _geojson(tmp_path, coords, crs=None):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [coords]}}]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(doc))
    return path


def test_geojson_area_bounds(tmp_path):
    ring = [[-148.2, 64.7], [-147.4, 64.75], [-147.5, 65.0], [-148.1, 64.95], [-148.2, 64.7]]
    assert parse_area(str(_geojson(tmp_path, ring))) == FAIRBANKS


@pytest.mark.parametrize("ring", [
    [[178.0, 51.0], [-179.0, 51.0], [-179.0, 52.0], [178.0, 52.0], [178.0, 51.0]],  # split at ±180
    [[178.0, 51.0], [181.0, 51.0], [181.0, 52.0], [178.0, 52.0], [178.0, 51.0]],  # continued past 180
])
def test_geojson_across_the_antimeridian_refused(tmp_path, ring):
    with pytest.raises(AreaError, match=r"crosses the antimeridian.*--area 178,51,180,52 and --area -180,51,-179,52"):
        parse_area(str(_geojson(tmp_path, ring)))


def test_geojson_in_another_crs_refused(tmp_path):
    ring = [[270000, 1640000], [320000, 1640000], [320000, 1690000], [270000, 1640000]]
    with pytest.raises(AreaError, match="declares CRS 'EPSG:3338'.*WGS84"):
        parse_area(str(_geojson(tmp_path, ring, "EPSG:3338")))


def test_geojson_missing_or_empty(tmp_path):
    with pytest.raises(AreaError, match="does not exist"):
        parse_area(str(tmp_path / "nope.geojson"))
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(AreaError, match="no geometry coordinates"):
        parse_area(str(empty))


@pytest.mark.parametrize("resolution, chunk", [(10.0, 1024), (30.0, 64)])
def test_alaska_grid_covers_the_area_on_statewide_chunks(resolution, chunk):
    g = area_grid(FAIRBANKS, resolution, chunk)
    assert g.alaska and g.crs == "EPSG:3338"
    tr = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(*FAIRBANKS, densify_pts=21)
    assert g.bounds[0] <= x0 and g.bounds[1] <= y0 and g.bounds[2] >= x1 and g.bounds[3] >= y1
    step = chunk * resolution
    assert g.bounds[2] - g.bounds[0] < x1 - x0 + 2 * step  # no more than one chunk of slack per side
    # every edge lies on a chunk boundary of the statewide grid: the area's chunks are statewide chunks
    state = statewide_grid(resolution)
    for edge, origin in ((g.bounds[0], state.xmin), (g.bounds[2], state.xmin), (g.bounds[1], state.ymax),
                         (g.bounds[3], state.ymax)):
        k = (edge - origin) / step
        assert math.isclose(k, round(k), abs_tol=1e-9)
    assert {t.id for t in g.tiles} >= {"AK050H51V14", "AK050H52V15"}


def test_outside_alaska_utm_grid():
    g = area_grid((10.0, 50.0, 10.5, 50.5), 30.0, 512)
    assert not g.alaska and g.crs == "EPSG:32632" and not g.tiles
    assert all(v % 30 == 0 for v in g.bounds)
    south = area_grid((-70.5, -33.6, -70.4, -33.4), 10.0, 512)
    assert south.crs == "EPSG:32719"
