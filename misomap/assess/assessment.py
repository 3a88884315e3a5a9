"""One class layer assessed from labelled points: checked against the map, weighed by the design
(or post-stratified by map class when the points are pedons), overall and per zone; and two maps
compared on the same points."""

from __future__ import annotations

import numpy as np

from misomap.assess.estimators import Comparison, Figures, StratifiedSample, compare, estimate
from misomap.assess.maps import AssessError, MapLayer
from misomap.assess.points import LabelledPoints, naive_design
from misomap.mapping.layers import NODATA

Zones = tuple[np.ndarray, tuple[str, ...]]
"""A zone code per map pixel (-1 outside every zone) and the zone names."""


def _weighted(points: LabelledPoints, layer: MapLayer) -> tuple[StratifiedSample, np.ndarray, np.ndarray, np.ndarray]:
    """The design, mapped codes, reference codes and pixel index of the points labelled for `layer`."""
    mapped, index = points.locate(layer)
    reference, keep = points.reference(layer.layer, layer.classes)
    if points.naive:
        sample = naive_design(int(keep.sum()), layer.pixel_counts())
    else:
        sample = points.design(keep)
    return sample, mapped[keep], reference[keep], index[keep]


def assess_layer(points: LabelledPoints, layer: MapLayer,
                 zones: Zones | None = None) -> tuple[Figures, dict[str, Figures]]:
    """Accuracy and area of `layer` from `points`, over the whole map and, with `zones`, per zone."""
    points.check_digests(layer)
    sample, mapped, reference, index = _weighted(points, layer)
    k = len(layer.classes)
    whole = estimate(sample, mapped, reference, k, layer.classes, layer.pixel_km2, layer.pixel_counts())
    per_zone: dict[str, Figures] = {}
    if zones is not None:
        codes, names = zones
        if codes.shape != layer.codes.shape:
            raise AssessError(f"the zones raster is {codes.shape}, the map {layer.codes.shape}")
        at_points = codes.ravel()[index]
        for z, name in enumerate(names):
            in_zone = (codes == z) & layer.valid
            if not (at_points == z).any():
                continue
            map_pixels = np.bincount(layer.codes[in_zone].ravel(), minlength=k)[:k]
            per_zone[name] = estimate(sample, mapped, reference, k, layer.classes, layer.pixel_km2, map_pixels,
                                      domain=(at_points == z).astype(float))
    return whole, per_zone


def compare_layers(points: LabelledPoints, a: MapLayer, b: MapLayer) -> Comparison:
    """Maps A and B of one class layer on the same labelled points (drawn for one of them, or a
    disagreement design of both): the design's weights come from the sample, each map's classes from
    its own pixels."""
    if a.grid != b.grid:
        raise AssessError(f"{a.url} and {b.url} are on different grids: compare maps of one grid")
    points.check_digests(a, b)
    sample, mapped_a, reference, index = _weighted(points, a)
    mapped_b = b.codes.ravel()[index].astype(np.int64)
    if (b.codes.ravel()[index] == NODATA).any():
        raise AssessError(f"{points.path}: some points lie on nodata of {b.layer} in {b.url}")
    return compare(sample, mapped_a, mapped_b, reference)
