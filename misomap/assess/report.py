"""What `misomap assess estimate` writes: estimate.json (per layer and class: area_km2 with
area_ci95_km2, users_accuracy, producers_accuracy with their CIs, overall_accuracy with
overall_accuracy_ci95; per zone when given), a Markdown report and a PNG (per layer: the map's
pixel-count area beside the error-adjusted area with its 95% interval, and the error matrix in
estimated area shares)."""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from misomap.assess.estimators import Comparison, Figures

INTERVALS = {"accuracy and area": "Wilson score interval at the design's effective sample size "
                                  "p(1-p)/SE^2 (Stehman 2014 stratified estimator; SE without finite-population "
                                  "correction)",
             "accuracy difference": "normal interval d ± 1.96 SE"}
NAIVE_NOTE = ("NAIVE: these labels are pedons, not a probability sample (sites chosen by access, roads and "
              "rivers); the figures weigh them as if they were a simple random sample of the map, and their "
              "intervals do not hold. Draw a sample with `misomap assess sample` for "
              "design-based figures.")


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN becomes null."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return _num(obj)
    return obj


def figures_json(fig: Figures) -> dict[str, Any]:
    """One layer's (or zone's) figures under the keys estimate.json promises."""
    classes = {}
    for c in fig.classes:
        area = c.area_km2
        classes[c.name] = {
            "map_area_km2": c.map_km2, "area_km2": area.value, "area_se_km2": area.se,
            "area_ci95_km2": [area.low, area.high], **c.share.as_dict("area_share"),
            **c.users.as_dict("users_accuracy"), **c.producers.as_dict("producers_accuracy"),
            "points_mapped": c.points_mapped, "points_reference": c.points_reference}
    return {"points": fig.points, "assessed_area_km2": fig.assessed_km2,
            **fig.overall.as_dict("overall_accuracy"), "classes": classes,
            "error_matrix_area_share": fig.matrix.tolist(), "error_matrix_points": fig.counts.tolist()}


def estimate_json(meta: dict[str, Any], layers: dict[str, tuple[Figures, dict[str, Figures]]]) -> dict[str, Any]:
    """The whole estimate.json: the run's description, then per layer its figures and its zones'."""
    out = {**meta, "intervals": INTERVALS, "layers": {}}
    for name, (fig, zones) in layers.items():
        out["layers"][name] = {**figures_json(fig), "zones": {z: figures_json(f) for z, f in zones.items()}}
    return _clean(out)


def _ci(v: float, low: float, high: float, digits: int = 3) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _layer_md(name: str, fig: Figures, naive: bool) -> list[str]:
    tag = " (naive)" if naive else ""
    lines = [f"### {name}{tag}", "",
             f"Points {fig.points}; overall accuracy{tag} {_ci(fig.overall.value, fig.overall.low, fig.overall.high)}",
             "", ("| class | map area km² | area km² [95% CI] | share | user's accuracy | producer's accuracy | "
                  "points mapped / labelled |"), "|---|---|---|---|---|---|---|"]
    for c in fig.classes:
        a = c.area_km2
        lines.append(f"| {c.name} | {c.map_km2:.2f} | {_ci(a.value, a.low, a.high, 2)} | "
                     f"{_ci(c.share.value, c.share.low, c.share.high)} | {_ci(c.users.value, c.users.low, c.users.high)} | "
                     f"{_ci(c.producers.value, c.producers.low, c.producers.high)} | "
                     f"{c.points_mapped} / {c.points_reference} |")
    names = [c.name for c in fig.classes]
    lines += ["", "Error matrix, estimated share of the assessed area (rows: map, columns: reference):", "",
              "| map \\ reference | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join("–" if not math.isfinite(v) else f"{v:.4f}" for v in row) + " |"
              for n, row in zip(names, fig.matrix)]
    return lines + [""]


def report_markdown(meta: dict[str, Any], layers: dict[str, tuple[Figures, dict[str, Figures]]]) -> str:
    """The Markdown report: the design, then each layer's table, error matrix and zones."""
    naive = bool(meta["naive"])
    lines = ["# Accuracy and area assessment", "", f"Map: `{meta['map']}` (digest `{meta['map_digest'][:16]}…`)  ",
             f"Labels: `{meta['labels']}`  ", f"Design: {meta['design']}", ""]
    if naive:
        lines += [f"> **{NAIVE_NOTE}**", ""]
    lines += ["Estimators: Stehman (2014) stratified estimators (Olofsson et al. 2014 when the strata are the "
              "map classes). Intervals: " + "; ".join(f"{k}: {v}" for k, v in INTERVALS.items()) + ".", "",
              "![areas and error matrices](assess.png)", ""]
    for name, (fig, zones) in layers.items():
        lines += _layer_md(name, fig, naive)
        for zone, zfig in zones.items():
            lines += _layer_md(f"{name} in {zone}", zfig, naive)
    return "\n".join(lines)


def report_png(layers: dict[str, tuple[Figures, dict[str, Figures]]], naive: bool) -> bytes:
    """Per layer: bars of the map's pixel-count area and the error-adjusted area with its 95% interval,
    and the error matrix (estimated area shares, point counts in brackets)."""
    fig, axes = plt.subplots(len(layers), 2, figsize=(13, 4.6 * len(layers)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3, 1]})
    for (name, (figs, _)), (ax_bar, ax_mat) in zip(layers.items(), axes):
        names = [c.name for c in figs.classes]
        pos = np.arange(len(names))
        est = np.array([c.area_km2.value for c in figs.classes])
        err = np.array([[c.area_km2.value - c.area_km2.low, c.area_km2.high - c.area_km2.value]
                        for c in figs.classes]).T
        ax_bar.bar(pos - 0.2, [c.map_km2 for c in figs.classes], 0.4, color="0.7", label="map (pixel count)")
        ax_bar.bar(pos + 0.2, est, 0.4, yerr=err, capsize=4, color="tab:blue",
                   label="error-adjusted, 95% CI" + (" (naive)" if naive else ""))
        ax_bar.set_xticks(pos, names, rotation=30, ha="right")
        ax_bar.set_ylabel("area (km²)")
        ax_bar.set_title(f"{name}: area")
        ax_bar.legend(fontsize=8)
        share = np.nan_to_num(figs.matrix)
        ax_mat.imshow(share, cmap="Blues")
        for i in range(len(names)):
            for j in range(len(names)):
                ax_mat.text(j, i, f"{share[i, j]:.3f}\n({figs.counts[i, j]})", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > share.max() / 2 else "black")
        ax_mat.set_xticks(pos, names, rotation=30, ha="right", fontsize=8)
        ax_mat.set_yticks(pos, names, fontsize=8)
        ax_mat.set_xlabel("reference")
        ax_mat.set_ylabel("map")
        ax_mat.set_title(f"error matrix (area share; points), OA {figs.overall.value:.3f}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def comparison_json(layers: dict[str, Comparison], meta: dict[str, Any]) -> dict[str, Any]:
    """compare.json: per layer each map's overall accuracy, the difference A − B and McNemar's test."""
    out = {}
    for name, c in layers.items():
        out[name] = {**c.overall_a.as_dict("overall_accuracy_a"), **c.overall_b.as_dict("overall_accuracy_b"),
                     **c.difference.as_dict("difference"), "only_a_right": c.only_a_right,
                     "only_b_right": c.only_b_right, "mcnemar_exact_p": c.mcnemar_p}
    return _clean({**meta, "intervals": INTERVALS, "layers": out})


def comparison_lines(layers: dict[str, Comparison], naive: bool) -> list[str]:
    """One line per layer for the terminal."""
    tag = " (naive)" if naive else ""
    return [f"{name}{tag}: OA A {_ci(c.overall_a.value, c.overall_a.low, c.overall_a.high)}  OA B "
            f"{_ci(c.overall_b.value, c.overall_b.low, c.overall_b.high)}  A−B "
            f"{_ci(c.difference.value, c.difference.low, c.difference.high)}  McNemar exact p {c.mcnemar_p:.4g} "
            f"(A alone right {c.only_a_right}, B alone right {c.only_b_right})" for name, c in layers.items()]
