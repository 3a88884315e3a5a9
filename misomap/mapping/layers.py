"""The map's output layers: how model probabilities become compact, self-describing rasters.

Probabilities and uncertainty are stored as uint8 percent (scale_factor 0.01), classes as uint8
codes with CF flag_values/flag_meanings (names from `misomap.core.classes`); 255 is nodata everywhere.
Class layers are derived from the stored (rounded) probabilities, so a reader never finds a pixel
whose stored class disagrees with its stored probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import entr

from misomap.core.classes import PERMAFROST_CLASSES, SOIL_ORDERS
from misomap.core.inputs import GROUP_BITS, INPUT_CLASSES

NODATA = 255
PROB_SCALE = 0.01
PERCENT_THRESHOLD = 50  # stored P(permafrost) >= 0.50 is class "present"


@dataclass(frozen=True)
class MapProbabilities:
    """A model's output on a block of the map: NaN where the input had no data."""

    permafrost: np.ndarray  # (h, w) float32, P(permafrost present)
    soil_order: np.ndarray  # (n_orders, h, w) float32, sums to 1 per pixel


@dataclass(frozen=True)
class Layer:
    """One output variable: its name, CF attributes, class names (class layers) and whether it has
    a leading per-class dimension (`soil_order`)."""

    name: str
    attrs: dict[str, Any]
    per_class: bool = False
    is_probability: bool = True
    classes: tuple[str, ...] = ()
    colours: tuple[tuple[int, int, int], ...] = ()

    @property
    def band_names(self) -> tuple[str, ...]:
        """One name per band: the soil orders for the per-class layer, else the layer's name."""
        return SOIL_ORDERS if self.per_class else (self.name,)


def _flags(names: tuple[str, ...]) -> dict[str, Any]:
    return {"flag_values": list(range(len(names))), "flag_meanings": " ".join(names)}


PERMAFROST_COLOURS = ((230, 200, 140), (40, 90, 200))
SOIL_ORDER_COLOURS = ((150, 80, 40), (240, 220, 120), (70, 130, 220), (60, 40, 30), (120, 180, 90),
                      (20, 20, 20), (200, 120, 160))
INPUT_COLOURS = ((0, 0, 0), (200, 60, 60), (230, 160, 40), (150, 100, 40), (90, 90, 220),
                 (170, 90, 200), (240, 200, 60), (60, 170, 90))
"""Colours of the `inputs_used` codes: every input green, radar + static only (filled) yellow."""
CLASS_COLOURS: dict[str, tuple[tuple[int, int, int], ...]] = {"permafrost_class": PERMAFROST_COLOURS,
                                                             "soil_order_class": SOIL_ORDER_COLOURS,
                                                             "inputs_used": INPUT_COLOURS}
NODATA_COLOUR = (255, 0, 255)
"""How every product draws nodata (viewer, quicklooks): magenta, far from every class colour and from
both colour ramps (blues, yellow-orange-brown), so a gap is never read as a low probability."""
CLASS_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "permafrost_class": ("no permafrost within 1 m of the surface (P < 0.50)",
                         "near-surface permafrost: within 1 m of the surface (P >= 0.50)"),
    "soil_order_class": ("Andisols: soils in volcanic ash with short-range-order minerals",
                         "Entisols: young soils with little or no horizon development",
                         "Gelisols: soils with permafrost within 1 m or 2 m (with gelic materials)",
                         "Histosols: organic soils (peat and muck)",
                         "Inceptisols: weakly developed soils with altered subsurface horizons",
                         "Mollisols: grassland soils with a thick, dark, base-rich surface horizon",
                         "Spodosols: acid forest soils with a subsurface accumulation of humus, Al and Fe"),
    "inputs_used": tuple(f"predicted from {name.replace('_', ' + ')} inputs" if name != "none" else "no input"
                         for name in INPUT_CLASSES),
}
"""One sentence per class, in class-code order (STAC classification and MLM class descriptions)."""

LAYERS: tuple[Layer, ...] = (
    Layer("permafrost_probability", {"long_name": "probability of near-surface permafrost (within 1 m)",
                                     "units": "1", "valid_range": [0, 100]}),
    Layer("permafrost_class", {"long_name": "near-surface permafrost presence", "units": "1",
                               **_flags(PERMAFROST_CLASSES)}, is_probability=False,
          classes=PERMAFROST_CLASSES, colours=PERMAFROST_COLOURS),
    Layer("soil_order_class", {"long_name": "most probable soil order (USDA Soil Taxonomy)", "units": "1",
                               **_flags(SOIL_ORDERS)}, is_probability=False,
          classes=SOIL_ORDERS, colours=SOIL_ORDER_COLOURS),
    Layer("soil_order_probability", {"long_name": "probability of each soil order", "units": "1",
                                     "valid_range": [0, 100]}, per_class=True),
    Layer("soil_order_entropy", {"long_name": "normalised entropy of the soil-order distribution "
                                 "(0 certain, 1 uniform)", "units": "1", "valid_range": [0, 100]}),
    Layer("permafrost_entropy", {"long_name": "normalised binary entropy of the permafrost probability "
                                 "(0 certain, 1 p=0.5)", "units": "1", "valid_range": [0, 100]}),
    Layer("inputs_used", {"long_name": "input groups with data at the pixel among those the model reads "
                          "(sum of bits: " + ", ".join(f"{b} {g}" for g, b in GROUP_BITS.items())
                          + "); a pixel lacking optical inputs is predicted from the others",
                          "units": "1", **_flags(INPUT_CLASSES)}, is_probability=False,
          classes=INPUT_CLASSES, colours=INPUT_COLOURS),
)


def _percent(p: np.ndarray) -> np.ndarray:
    out = np.full(p.shape, NODATA, np.uint8)
    ok = np.isfinite(p)
    out[ok] = np.rint(np.clip(p[ok], 0.0, 1.0) * 100).astype(np.uint8)
    return out


def encode_layers(probs: MapProbabilities, inputs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """uint8 arrays for every layer in LAYERS, nodata where the probabilities are NaN;
    `inputs_used` holds `inputs` (misomap.core.inputs codes; nodata where not given).

    Classes come from the stored percentages: permafrost "present" where the stored P >= 0.50, the
    soil order the first maximum of the stored per-order percentages."""
    pf, so = probs.permafrost.astype(np.float32), probs.soil_order.astype(np.float32)
    valid_pf = np.isfinite(pf)
    valid_so = np.all(np.isfinite(so), axis=0)
    so_prob = _percent(np.where(valid_so[None], so, np.nan))
    pf_prob = _percent(pf)
    pf_class = np.full(pf.shape, NODATA, np.uint8)
    pf_class[valid_pf] = (pf_prob[valid_pf] >= PERCENT_THRESHOLD).astype(np.uint8)
    so_class = np.full(pf.shape, NODATA, np.uint8)
    so_class[valid_so] = np.argmax(so_prob[:, valid_so], axis=0).astype(np.uint8)
    # entr(x) = -x log x with entr(0) = 0: certain pixels (P = 0 or 1) have entropy 0, not NaN
    so_ent = entr(np.clip(so, 0.0, 1.0)).sum(axis=0) / np.log(so.shape[0])
    q = np.clip(pf, 0.0, 1.0)
    pf_ent = (entr(q) + entr(1.0 - q)) / np.log(2.0)
    so_ent[~valid_so] = np.nan
    pf_ent[~valid_pf] = np.nan
    return {
        "permafrost_probability": pf_prob,
        "permafrost_class": pf_class,
        "soil_order_class": so_class,
        "soil_order_probability": so_prob,
        "soil_order_entropy": _percent(so_ent),
        "permafrost_entropy": _percent(pf_ent),
        "inputs_used": (np.full(pf.shape, NODATA, np.uint8) if inputs is None
                        else np.asarray(inputs, np.uint8).reshape(pf.shape)),
    }


def map_bytes_per_px() -> int:
    """Bytes per pixel of the map's uint8 layers (per-class layers count once per soil order)."""
    return sum(len(SOIL_ORDERS) if layer.per_class else 1 for layer in LAYERS)
