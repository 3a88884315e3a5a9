"""Writes the pedon fixtures of this folder (run from the repository root; deterministic).

Layouts as published (sources in docs/own-area.md): the Lab Data Mart's `lab_combine_nasis_ncss` and
`lab_layer` tables (column names as ncss-tech/soilDB `fetchLDM` lists them) and the MISO reference's
point-data records (knowledge-computing/Peatland-permafrost `MISO/datasets/dataset.py`). The values
are made up: pedons in the walk area (lon -147.9..-147.8, lat 60.80..60.85), permafrost east of
-147.85, Spodosols north / Inceptisols south of 60.825 in the west, plus one row per problem the
importers must report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pyproj import Transformer

HERE = Path(__file__).parent
rng = np.random.default_rng(35)
TO_3338 = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True)


def labels(lon: float, lat: float) -> tuple[str, bool]:
    if lon > -147.85:
        return "gelisols", True
    return ("spodosols" if lat > 60.825 else "inceptisols"), False


def horizons(key: int, frozen: bool, depth: float = 150.0) -> list[dict]:
    names = ["Oi", "A", "Bw", "Bgf" if frozen else "BC", "Cf" if frozen else "C"]
    tops = [0.0, 10.0, 25.0, 45.0, 80.0]
    bots = [min(b, depth) for b in tops[1:] + [depth]]
    return [{"layer_key": key * 10 + i, "labsampnum": f"40A{key:05d}{i}", "pedon_key": key, "layer_sequence": i + 1,
             "layer_type": "horizon", "hzn_desgn": n, "hzn_top": t, "hzn_bot": b}
            for i, (n, t, b) in enumerate(zip(names, tops, bots)) if t < depth]


def kssl() -> None:
    peds, layers = [], []
    for i in range(70):
        key = 90000 + i
        lon, lat = rng.uniform(-147.895, -147.805), rng.uniform(60.805, 60.845)
        order, frozen = labels(lon, lat)
        peds.append({"pedon_key": key, "site_key": 70000 + i, "pedlabsampnum": f"40N{i:04d}",
                     "pedoniid": 800000 + i, "upedonid": f"2004AK020{i:03d}", "samp_name": "Unnamed",
                     "samp_classification_name": None, "samp_taxorder": order, "corr_name": None,
                     "corr_classification_name": None, "corr_taxorder": None, "SSL_name": None,
                     "SSL_taxorder": order, "site_obsdate": "2004-07-12", "latitude_decimal_degrees": round(lat, 6),
                     "longitude_decimal_degrees": round(lon, 6)})
        layers += horizons(key, frozen)
    def base(n: int) -> dict:  # a fresh place in the area for each problem row
        lon, lat = rng.uniform(-147.895, -147.805), rng.uniform(60.805, 60.845)
        return {**peds[0], "pedon_key": n, "latitude_decimal_degrees": round(lat, 6),
                "longitude_decimal_degrees": round(lon, 6)}
    peds.append(dict(peds[5]))  # an exact duplicate row
    peds.append({**base(91001), "latitude_decimal_degrees": None, "longitude_decimal_degrees": None})
    peds.append({**base(91002), "latitude_decimal_degrees": 95.2})  # impossible latitude
    peds.append({**base(91003), "latitude_decimal_degrees": 64.85,
                 "longitude_decimal_degrees": -147.8})  # Fairbanks: outside the area
    peds.append({**base(91004), "samp_taxorder": "alfisols", "SSL_taxorder": "alfisols"})
    layers += horizons(91004, False)  # not a mapped order; permafrost from the horizons (absent)
    peds.append({**base(91005), "corr_taxorder": "gelisols", "samp_taxorder": "inceptisols",
                 "SSL_taxorder": None, "longitude_decimal_degrees": -147.81})  # orders disagree
    layers += horizons(91005, True)
    peds.append({**base(91006), "SSL_taxorder": "inceptisols", "samp_taxorder": "inceptisols"})
    layers += horizons(91006, True)  # frozen within 100 cm but not a Gelisol: conflicting labels
    peds.append({**base(91007), "SSL_taxorder": None, "samp_taxorder": None})
    layers += horizons(91007, False, depth=50.0)  # no order, described to 50 cm only: no label left
    peds.append({**peds[7], "pedon_key": 91008, "samp_taxorder": "histosols", "SSL_taxorder": "histosols"})
    layers += horizons(91008, peds[7]["SSL_taxorder"] == "gelisols")  # same place as 90007, another order
    pd.DataFrame(peds).to_csv(HERE / "kssl" / "lab_combine_nasis_ncss.csv", index=False)
    pd.DataFrame(layers).to_csv(HERE / "kssl" / "lab_layer.csv", index=False)


def miso() -> None:
    recs = []
    for i in range(50):
        lon, lat = rng.uniform(-147.895, -147.805), rng.uniform(60.805, 60.845)
        order, frozen = labels(lon, lat)
        x, y = TO_3338.transform(lon, lat)
        recs.append({"id": 5000 + i, "aksdb_dts": "2012-08-01", "lon": round(lon, 6), "lat": round(lat, 6),
                     "x_3338": round(x, 1), "y_3338": round(y, 1), "x_pixel": int(x // 10) % 5000,
                     "y_pixel": int(-y // 10) % 5000, "grid_id": "AK050H52V23", "aksdb_pf1m_bin": int(frozen),
                     "tax_order": order.capitalize(), "aksdb_othick_cum_best": None, "peat_level": "no"})
    recs[3]["tax_order"] = ["Gelisols", "Histosols"]  # observations disagree
    east = next(r for r in recs[5:] if r["aksdb_pf1m_bin"] == 1)
    east["aksdb_pf1m_bin"] = [1, 1]  # agree: collapsed to 1
    recs.append({**recs[0], "id": 5999, "lon": recs[0]["lat"], "lat": recs[0]["lon"]})  # lat/lon swapped
    recs.append({**recs[1], "id": 5998})  # same place and labels as 5001
    (HERE / "miso" / "point_data.json").write_text(json.dumps(recs, indent=1))


if __name__ == "__main__":
    (HERE / "kssl").mkdir(exist_ok=True)
    (HERE / "miso").mkdir(exist_ok=True)
    kssl()
    miso()
