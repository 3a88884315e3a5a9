"""`misomap assess sample | estimate | compare`: design-based accuracy and area of a finished map from
a labelled probability sample (Olofsson et al. 2014; Stehman 2014), and the demo's check of its
permafrost area against the world's truth. Every input is checked before anything is written."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

from misomap.assess.assessment import Zones, assess_layer, compare_layers
from misomap.assess.estimators import Comparison, Interval
from misomap.assess.maps import CLASS_LAYERS, AssessError, MapLayer, confidence, read_layer, zone_raster
from misomap.assess.points import LabelledPoints, label_from_raster, read_points
from misomap.assess.report import (
    NAIVE_NOTE,
    comparison_json,
    comparison_lines,
    estimate_json,
    report_markdown,
    report_png,
)
from misomap.assess.sampling import SampleSpec, build_strata, sample_map
from misomap.core.config_base import StorageConfig
from misomap.core.storage import Target
from misomap.evaluation.map_truth import truth_raster

log = logging.getLogger(__name__)

OUTPUTS = ("estimate.json", "report.md", "assess.png")


def _zones(zones: str | None, column: str | None, layer: MapLayer, storage: StorageConfig) -> Zones | None:
    return zone_raster(zones, column, layer.grid, storage) if zones else None


def _write_parquet(out: str, table, storage: StorageConfig) -> None:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    Target(out, storage).atomic_write_bytes(buf.getvalue())


def run_sample(map_path: str, layer: str, spec: SampleSpec, out: str, zones: str | None = None,
               zone_column: str | None = None, versus: str | None = None,
               storage: StorageConfig | None = None) -> tuple[int, int]:
    """Draw a sample of the map's pixels and write it as GeoParquet; returns (points, strata). An
    existing file is refused (it may hold someone's labels)."""
    storage = storage or StorageConfig()
    if Target(out, storage).exists():
        raise AssessError(f"--out {out} exists (it may hold labels): nothing was written; pick a new file")
    if versus is not None and spec.design != "disagreement":
        raise AssessError("--versus is only for --design disagreement")
    ml = read_layer(map_path, layer, storage)
    other = read_layer(versus, layer, storage) if versus else None
    conf = confidence(map_path, layer, storage) if spec.allocation == "optimal" and spec.design == "stratified" else None
    zr = _zones(zones, zone_column, ml, storage)
    strata = build_strata(ml, spec.design, conf, other, zr)
    table = sample_map(ml, strata, spec, other, zr)
    _write_parquet(out, table, storage)
    log.info("sample of %s (%s) written to %s", ml.url, layer, out)
    return len(table), len(strata.names)


def _labelled_layers(points: LabelledPoints) -> list[str]:
    layers = [name for name in CLASS_LAYERS if points.label_column(name) is not None]
    if not layers:
        raise AssessError(f"{points.path} has no label column (`label`, or `label_<layer>` for one of "
                          f"{sorted(CLASS_LAYERS)})")
    return layers


def run_estimate(map_path: str, labels: str, out: str, zones: str | None = None, zone_column: str | None = None,
                 storage: StorageConfig | None = None) -> dict:
    """Accuracy and error-adjusted area of every labelled class layer (and per zone); writes
    estimate.json, report.md and assess.png under `out` and returns the estimate."""
    storage = storage or StorageConfig()
    points = read_points(labels, storage)
    results, digest = {}, ""
    for name in _labelled_layers(points):
        ml = read_layer(map_path, name, storage)
        results[name] = assess_layer(points, ml, _zones(zones, zone_column, ml, storage))
        digest = ml.digest
    meta = {"map": map_path, "map_digest": digest, "labels": labels, "naive": points.naive,
            "design": "pedons or other non-probability points (naive)" if points.naive else
            f"{points.table['design'].iloc[0]}, {points.table['allocation'].iloc[0]} allocation, "
            f"{points.table['stratum'].nunique()} strata, seed {points.table['seed'].iloc[0]}"}
    if points.naive:
        log.warning("%s", NAIVE_NOTE)
        meta["note"] = NAIVE_NOTE
    doc = estimate_json(meta, results)
    files = dict(zip(OUTPUTS, (json.dumps(doc, indent=2).encode(), report_markdown(meta, results).encode(),
                               report_png(results, points.naive))))
    for name, data in files.items():  # made whole first: a failure writes nothing
        Target(out, storage).join(name).atomic_write_bytes(data)
    log.info("assessment of %s written to %s", map_path, out)
    return doc


def run_compare(map_a: str, map_b: str, labels: str, out: str | None = None,
                storage: StorageConfig | None = None) -> list[str]:
    """Both maps' overall accuracy on the same labelled points, their difference and McNemar's exact
    test, per labelled layer; the lines to print (and compare.json under `out`)."""
    storage = storage or StorageConfig()
    points = read_points(labels, storage)
    results: dict[str, Comparison] = {}
    for name in _labelled_layers(points):
        results[name] = compare_layers(points, read_layer(map_a, name, storage), read_layer(map_b, name, storage))
    if out is not None:
        doc = comparison_json(results, {"map_a": map_a, "map_b": map_b, "labels": labels, "naive": points.naive})
        Target(out, storage).join("compare.json").atomic_write_bytes(json.dumps(doc, indent=2).encode())
    return ([NAIVE_NOTE] if points.naive else []) + comparison_lines(results, points.naive)


@dataclass(frozen=True)
class TruthArea:
    """A map's permafrost area: by pixel count, estimated from a sample labelled by the truth, and true."""

    map_km2: float
    estimate: Interval
    true_km2: float


def truth_area(map_path: str, world: str, n: int = 300, seed: int = 0) -> TruthArea:
    """The demo's check: permafrost area of the map from an n-point sample stratified by its classes,
    labelled from the world's truth raster, against the true permafrost area of the world's land."""
    ml = read_layer(map_path, "permafrost_class")
    truth = truth_raster(world, "permafrost")
    spec = SampleSpec(n=n, design="stratified", allocation="proportional", seed=seed)
    table = sample_map(ml, build_strata(ml, "stratified"), spec)
    points = LabelledPoints("truth sample", label_from_raster(table, ml, truth, "label"))
    whole, _ = assess_layer(points, ml)
    present = ml.classes.index("present")
    return TruthArea(whole.classes[present].map_km2, whole.classes[present].area_km2,
                     float((truth == 1).sum()) * ml.pixel_km2)
