"""Property-based tests (hypothesis): grid and chunk arithmetic, window alignment, config validation,
redaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misomap.config import config_from_dict
from misomap.core.config_base import overlaps
from misomap.cube.grid import Grid, plan_chunks
from misomap.core.errors import ConfigError, redact
from misomap.mapping.chunk import context_bounds

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
X0, Y0 = 200_000.0, 1_600_000.0  # inside EPSG:3338's domain (interior Alaska)


@FAST
@given(h=st.integers(1, 300), w=st.integers(1, 300), chunk=st.integers(1, 70))
def test_chunks_tile_the_grid_exactly_once(h, w, chunk):
    grid = Grid("EPSG:3338", 10.0, X0, Y0, X0 + 10.0 * w, Y0 + 10.0 * h)
    cover = np.zeros((h, w), np.int32)
    for c in plan_chunks(grid, chunk):
        assert 0 < c.height <= chunk and 0 < c.width <= chunk
        assert c.row0 == c.iy * chunk and c.col0 == c.ix * chunk
        cover[c.row0:c.row0 + c.height, c.col0:c.col0 + c.width] += 1
    assert (cover == 1).all()


@FAST
@given(res=st.sampled_from([1.0, 2.5, 10.0, 30.0, 250.0]),
       x=st.floats(-1e5, 1e5), y=st.floats(-1e5, 1e5), dx=st.floats(0.01, 5e4), dy=st.floats(0.01, 5e4))
def test_aligned_grid_is_the_smallest_cover(res, x, y, dx, dy):
    g = Grid.aligned("EPSG:3338", res, (X0 + x, Y0 + y, X0 + x + dx, Y0 + y + dy))
    for v in g.bounds:
        assert abs(v / res - round(v / res)) < 1e-6
    assert g.xmin <= X0 + x + 1e-6 and g.ymin <= Y0 + y + 1e-6
    assert g.xmax >= X0 + x + dx - 1e-6 and g.ymax >= Y0 + y + dy - 1e-6
    assert g.xmin > X0 + x - res - 1e-6 and g.xmax < X0 + x + dx + res + 1e-6
    assert g.width == len(g.x_coords()) and g.height == len(g.y_coords())


@dataclass(frozen=True)
class _Pred:
    halo_px: int
    align_px: int
    bands: tuple[str, ...] = ()


@FAST
@given(cube_w=st.integers(8, 200), cube_h=st.integers(8, 200), factor=st.sampled_from([1, 2, 3]),
       halo=st.integers(0, 12), align=st.sampled_from([1, 2, 4, 8, 16]), data=st.data())
def test_context_window_holds_block_and_halo_on_aligned_cube_pixels(cube_w, cube_h, factor, halo, align, data):
    res = 10.0
    cube = Grid("EPSG:3338", res, X0, Y0, X0 + res * cube_w, Y0 + res * cube_h)
    out = Grid.aligned("EPSG:3338", res * factor, cube.bounds)
    row0 = data.draw(st.integers(0, out.height - 1))
    col0 = data.draw(st.integers(0, out.width - 1))
    sub = out.window(row0, col0, data.draw(st.integers(1, out.height - row0)),
                     data.draw(st.integers(1, out.width - col0)))
    xmin, ymin, xmax, ymax = context_bounds(cube, sub, _Pred(halo, align))
    assert xmin <= sub.xmin - halo * res + 1e-6 and xmax >= sub.xmax + halo * res - 1e-6
    assert ymin <= sub.ymin - halo * res + 1e-6 and ymax >= sub.ymax + halo * res - 1e-6
    for edge, origin in ((xmin, cube.xmin), (xmax, cube.xmin)):
        steps = (edge - origin) / (res * align)
        assert abs(steps - round(steps)) < 1e-6
    for edge in (ymin, ymax):
        steps = (cube.ymax - edge) / (res * align)
        assert abs(steps - round(steps)) < 1e-6


def _cube(**over):
    section = {"out": "/tmp/never-written.zarr", "datetime": "2021-01-01/2021-12-31",
               "bounds": [X0, Y0, X0 + 1000.0, Y0 + 1000.0], "resolution": 10.0, "chunk": 64,
               "sources": [{"collection": "c", "kind": "static", "bands": {"elevation": "e"}}]}
    section.update(over)
    return {"cube": section}


@FAST
@given(x=st.floats(-5e5, 5e5), y=st.floats(-5e5, 5e5), w=st.floats(50, 2e5), h=st.floats(50, 2e5),
       res=st.floats(0.5, 40))
def test_ordered_bounds_in_domain_accepted_and_their_mirror_refused(x, y, w, h, res):
    bounds = [X0 + x, Y0 + y, X0 + x + w, Y0 + y + h]
    assert config_from_dict(_cube(bounds=bounds, resolution=res)).cube.bounds == tuple(bounds)
    with pytest.raises(ConfigError, match="not ordered"):
        config_from_dict(_cube(bounds=[bounds[2], bounds[1], bounds[0], bounds[3]], resolution=res))


@FAST
@given(res=st.floats(max_value=0.0, allow_nan=False), level=st.integers().filter(lambda v: not 1 <= v <= 22),
       workers=st.integers(max_value=0))
def test_nonpositive_resolution_bad_codec_level_and_no_workers_refused(res, level, workers):
    with pytest.raises(ConfigError, match="cube.resolution"):
        config_from_dict(_cube(resolution=res))
    with pytest.raises(ConfigError, match="cube.zstd_level"):
        config_from_dict(_cube(zstd_level=level))
    with pytest.raises(ConfigError, match="cube.workers"):
        config_from_dict(_cube(workers=workers))


@FAST
@given(a=st.dates(date(1950, 1, 1), date(2100, 1, 1)), days=st.integers(-5000, 5000))
def test_datetime_range_accepted_iff_ordered(a, days):
    b = a + timedelta(days=days)
    text = f"{a.isoformat()}/{b.isoformat()}"
    if days >= 0:
        assert config_from_dict(_cube(datetime=text)).cube.datetime == text
    else:
        with pytest.raises(ConfigError, match="ends before it starts"):
            config_from_dict(_cube(datetime=text))


@FAST
@given(lat=st.floats(-1000, 1000).filter(lambda v: abs(v) > 90))
def test_latitude_beyond_the_poles_refused(lat):
    with pytest.raises(ConfigError, match="cube.bbox"):
        config_from_dict(_cube(bounds=None, bbox=[-150.0, min(lat, 60.0), -149.0, max(lat, 61.0)]))


_SECRET = st.text(st.characters(min_codepoint=48, max_codepoint=122).filter(str.isalnum), min_size=6, max_size=30)


@FAST
@given(user=_SECRET, secret=_SECRET, token=_SECRET)
def test_redaction_removes_userinfo_and_query_tokens(user, secret, token):
    text = (f"cannot read https://{user}:{secret}@blob.example/c/x.tif?sig={token}&se=2030 and "
            f"s3://{user}:{secret}@bucket/key")
    clean = redact(text)
    assert secret not in clean and token not in clean
    assert "blob.example/c/x.tif" in clean and "bucket/key" in clean


@FAST
@given(parts=st.lists(st.text("abcxyz", min_size=1, max_size=4), min_size=1, max_size=4),
       extra=st.lists(st.text("abcxyz", min_size=1, max_size=4), max_size=3))
def test_overlap_is_symmetric_and_prefix_aware(parts, extra):
    a = "/data/" + "/".join(parts)
    b = "/".join([a, *extra]) if extra else a
    assert overlaps(a, b) and overlaps(b, a)
    sibling = a + "x"  # a/..x is a different folder, not inside a
    assert not overlaps(a, sibling) and not overlaps(sibling, a)
