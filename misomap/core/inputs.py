"""Input groups of the cube's bands and which of them a pixel has: the rule every model and the map
share for pixels where a source had no observation (a summer Sentinel-2 composite with no clear
sky), so that such pixels are predicted from what is present instead of left as holes.

Groups follow the cube's band names (docs/contracts.md section 2): `s2_*` optical, `s1_*` radar,
anything else static covariates (terrain, climate). A group counts as present at a pixel when every
band of it that a model reads has data there. A pixel is predictable when every non-optical band is
present (the optical bands are the ones clouds remove); a model reading only optical bands needs them.
"""

from __future__ import annotations

import numpy as np

GROUP_BITS: dict[str, int] = {"optical": 1, "radar": 2, "static": 4}
"""Bit of each input group in the `inputs_used` map layer."""
OPTIONAL_GROUPS = ("optical",)
"""Groups a prediction may go without (filled from the other inputs)."""
INPUT_CLASSES: tuple[str, ...] = tuple(
    "_".join(g for g, bit in GROUP_BITS.items() if code & bit) or "none" for code in range(8))
"""Class names of the `inputs_used` codes 0..7 (the code is the sum of the present groups' bits)."""


def band_group(band: str) -> str:
    """The input group of a cube band name: `optical` (s2_*), `radar` (s1_*) or `static`."""
    if band.startswith("s2_"):
        return "optical"
    if band.startswith("s1_"):
        return "radar"
    return "static"


def required_bands(bands: list[str] | tuple[str, ...]) -> list[str]:
    """The bands a prediction cannot go without: every band outside OPTIONAL_GROUPS, or all of them
    when a model reads nothing else."""
    required = [b for b in bands if band_group(b) not in OPTIONAL_GROUPS]
    return required or list(bands)


def input_codes(values: np.ndarray, bands: list[str] | tuple[str, ...]) -> np.ndarray:
    """uint8 `inputs_used` codes (…) for `values` (band, …): the bits of the groups whose bands all
    have data (finite) at each pixel."""
    finite = np.isfinite(values)
    out = np.zeros(values.shape[1:], np.uint8)
    for group, bit in GROUP_BITS.items():
        idx = [i for i, b in enumerate(bands) if band_group(b) == group]
        if idx:
            out |= np.where(finite[idx].all(axis=0), np.uint8(bit), np.uint8(0))
    return out


def predictable(values: np.ndarray, bands: list[str] | tuple[str, ...]) -> np.ndarray:
    """Boolean (…): pixels of `values` (band, …) where every required band has data."""
    req = required_bands(bands)
    idx = [list(bands).index(b) for b in req]
    return np.isfinite(values[idx]).all(axis=0)


def full_code(bands: list[str] | tuple[str, ...]) -> int:
    """The `inputs_used` code of a pixel where every group a model reads is present."""
    return sum(GROUP_BITS[g] for g in {band_group(b) for b in bands})
