"""The LimeSoDa sets that carry spectra, grouped by sensor family, and the cross-set pretraining
pool of each: which other sets share enough of its spectral range, and the model axis they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from misomap.spectra.config import AxisSpec
from misomap.spectra.preprocess import common_axis

Family = Literal["mir", "visnir"]

LIMESODA_SPECTRAL_SETS: dict[str, Family] = {
    "H.138": "mir", "NRW.115": "mir", "NRW.42": "mir", "NRW.62": "mir", "O.32": "mir",
    "CV.98": "visnir", "MG.44": "visnir", "RP.62": "visnir", "SA.112": "visnir", "SC.93": "visnir",
    "SL.125": "visnir", "SP.231": "visnir", "SSP.460": "visnir", "SSP.58": "visnir", "UL.120": "visnir",
}
"""Every LimeSoDa 0.1.5 set with spectral columns (15) (`wn_*` cm-1: MIR; `wl_*` nm: vis-NIR)."""

FAMILY_BOUNDS: dict[Family, AxisSpec] = {
    "mir": AxisSpec(start=600, stop=4000, step=4),
    "visnir": AxisSpec(start=400, stop=2480, step=4),
}
"""Widest axis per family (the OSSL MIR range; vis-NIR without the noisy detector ends)."""


@dataclass(frozen=True)
class Pool:
    """The sets a VAE pretrains on for one evaluated set, and the axis they share."""

    target: str
    donors: tuple[str, ...]
    dropped: tuple[str, ...]
    axis: AxisSpec


def pretraining_pool(target: str, ranges: dict[str, tuple[float, float]], bounds: AxisSpec,
                     min_coverage: float) -> Pool:
    """Donors are the other sets whose range covers at least `min_coverage` of the target's range
    (within `bounds`); the axis is the intersection of the target's and the donors' ranges. Chosen
    from the spectral axes alone (no labels, no folds), so it cannot leak test information."""
    lo, hi = max(bounds.start, ranges[target][0]), min(bounds.stop, ranges[target][1])
    width = max(hi - lo, 1e-9)
    donors, dropped = [], []
    for name, (a, b) in ranges.items():
        if name == target:
            continue
        (donors if (min(hi, b) - max(lo, a)) / width >= min_coverage else dropped).append(name)
    axis = common_axis({n: ranges[n] for n in (target, *donors)}, bounds)
    return Pool(target, tuple(donors), tuple(dropped), axis)
