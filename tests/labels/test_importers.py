"""`misomap import-pedons` on files of the published layouts (tests/data/pedons, made by its
make_fixtures.py): what is kept, what is dropped or changed and why, and the output's contract."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from misomap.config import RunConfig, load_config
from misomap.core.config_base import StorageConfig
from misomap.jobs.import_pedons import run_import_pedons
from misomap.jobs.init import run_init
from misomap.labels.config import LabelsConfig
from misomap.labels.importers import kssl_permafrost
from misomap.labels.pedons import read_labels
from tests.test_bad_inputs import run_in_process

DATA = Path(__file__).parents[1] / "data" / "pedons"
KSSL = [str(DATA / "kssl" / "lab_combine_nasis_ncss.csv"), str(DATA / "kssl" / "lab_layer.csv")]
MISO = [str(DATA / "miso" / "point_data.json")]
TO_3338 = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True)


@pytest.fixture
def run(tmp_path) -> RunConfig:
    """A run configuration made by `init` over the fixtures' area (lon -147.9..-147.8, lat 60.8..60.85)."""
    run_init("-147.9,60.8,-147.8,60.85", "planetary-computer", tmp_path / "run.yaml", 30.0, "2019",
             str(tmp_path / "walk"), chunk=64)
    return load_config(tmp_path / "run.yaml")


def _report(summary) -> pd.DataFrame:
    return pd.read_csv(summary.report, dtype={"pedon_id": str})


def _reasons(report: pd.DataFrame, pid: str) -> list[str]:
    return list(report.loc[report["pedon_id"] == pid, "reason"])


def test_kssl_lab_data_mart(run):
    s = run_import_pedons(run, KSSL, "kssl")
    pedons = read_labels(LabelsConfig(pedons=s.out), StorageConfig())  # the contract's own reader
    report = _report(s)
    ped = pd.read_csv(KSSL[0], dtype={"pedon_key": str})
    assert s.read == len(ped) and s.kept == len(pedons)
    # every input row is kept or reported dropped (the duplicate 90005 twice: one kept, one dropped)
    dropped = report[report["action"] == "dropped"]
    assert len(pedons) + len(dropped) == len(ped)
    assert {k: _reasons(report, k)[0].split(" (")[0].split(":")[0] for k in ("91001", "91002", "91003")} == {
        "91001": "missing coordinates", "91002": "impossible coordinates lon -147.85671, lat 95.2",
        "91003": "outside the area"}
    assert any("duplicate" in r for r in _reasons(report, "90005")) and "90005" in set(pedons["pedon_id"])
    for pid in ("90007", "91008"):  # one place, two orders: both dropped
        assert any(r.startswith("conflicting labels: rows [8, 79]") for r in _reasons(report, pid))
        assert pid not in set(pedons["pedon_id"])
    assert _reasons(report, "91005")[0].startswith("taxonomic orders disagree (corr_taxorder gelisols, "
                                                   "samp_taxorder inceptisols): took corr_taxorder")
    assert _reasons(report, "91004")[0].startswith("order Alfisols is not one of the mapped classes")
    assert "makes a Gelisol" in _reasons(report, "91006")[0]
    assert _reasons(report, "91007") == [("horizons described to 50 cm (< 100) with no frozen (f) horizon: "
                                         "permafrost unknown"), "no label left (neither permafrost nor soil order)"]
    kept = pedons.set_index("pedon_id")
    assert kept.loc["91004", "permafrost"] == 0 and pd.isna(kept.loc["91004", "soil_order"])
    assert kept.loc["91006", "permafrost"] == 1 and pd.isna(kept.loc["91006", "soil_order"])
    assert kept.loc["91005", "soil_order"] == "Gelisols"
    # permafrost, recomputed from lab_layer: an `f` horizon starting above 100 cm
    layers = pd.read_csv(KSSL[1], dtype={"pedon_key": str})
    frozen = set(layers.loc[layers["hzn_desgn"].str.contains("f") & (layers["hzn_top"] < 100), "pedon_key"])
    regular = kept.index[kept.index.str.startswith("90")]
    assert (kept.loc[regular, "permafrost"] == [int(k in frozen) for k in regular]).all()
    src = ped.drop_duplicates("pedon_key").set_index("pedon_key").loc[regular]
    assert list(kept.loc[regular, "soil_order"]) == list(src["SSL_taxorder"].str.capitalize())
    x, y = TO_3338.transform(src["longitude_decimal_degrees"].to_numpy(), src["latitude_decimal_degrees"].to_numpy())
    np.testing.assert_allclose(kept.loc[regular].geometry.x, x, atol=1e-6)
    np.testing.assert_allclose(kept.loc[regular].geometry.y, y, atol=1e-6)
    assert pedons.crs.to_string() == "EPSG:3338" and str(pedons["permafrost"].dtype) == "Int8"


def test_kssl_joined_export_gives_the_same_pedons(run, tmp_path):
    """fetchLDM-style: one row per layer, pedon columns repeated; same result as the two tables."""
    ped, lay = pd.read_csv(KSSL[0]), pd.read_csv(KSSL[1])
    joined = ped.merge(lay, on="pedon_key", how="left")
    joined.to_csv(tmp_path / "joined.csv", index=False)
    a = gpd.read_parquet(run_import_pedons(run, KSSL, "kssl", out=str(tmp_path / "a.parquet")).out)
    b = gpd.read_parquet(run_import_pedons(run, [str(tmp_path / "joined.csv")], "kssl",
                                           out=str(tmp_path / "b.parquet")).out)
    pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))


def test_miso_reference_points(run):
    s = run_import_pedons(run, MISO, "miso")
    report, pedons = _report(s), gpd.read_parquet(s.out).set_index("pedon_id")
    assert s.read == 52 and s.kept == 50
    assert _reasons(report, "5003")[0].startswith("conflicting labels: tax_order observations")
    assert pd.isna(pedons.loc["5003", "soil_order"]) and pedons.loc["5003", "permafrost"] in (0, 1)
    assert _reasons(report, "5999")[0].startswith("impossible coordinates")  # lat/lon swapped
    assert _reasons(report, "5998")[0].startswith("duplicate: same location and labels as row 2")
    raw = pd.read_json(MISO[0], dtype={"id": str}).set_index("id")
    collapsed = raw.index[raw["aksdb_pf1m_bin"].map(lambda v: isinstance(v, list) and v == [1, 1])]
    assert len(collapsed) == 1 and pedons.loc[collapsed[0], "permafrost"] == 1
    # the reference's own projected coordinates agree with ours (its x_3338/y_3338 columns)
    ok = pedons.index.intersection(raw.index)
    np.testing.assert_allclose(pedons.loc[ok].geometry.x, raw.loc[ok, "x_3338"].astype(float), atol=0.1)


def test_any_table_through_a_column_map_and_crs(run, tmp_path):
    src = pd.read_json(MISO[0], dtype={"id": str}).head(20)
    utm = Transformer.from_crs("EPSG:4326", "EPSG:32606", always_xy=True)
    e, n = utm.transform(src["lon"].to_numpy(), src["lat"].to_numpy())
    table = pd.DataFrame({"site": src["id"], "easting": e, "northing": n,
                          "order": src["tax_order"].map(lambda v: v if isinstance(v, str) else None),
                          "pf": src["aksdb_pf1m_bin"].map(lambda v: "yes" if v in (1, [1, 1]) else "no")})
    table.to_csv(tmp_path / "mine.csv", index=False)
    s = run_import_pedons(run, [str(tmp_path / "mine.csv")], "table",
                          "pedon_id=site,x=easting,y=northing,soil_order=order,permafrost=pf", "EPSG:32606",
                          out=str(tmp_path / "mine.parquet"))
    got = gpd.read_parquet(s.out).set_index("pedon_id")
    x, _ = TO_3338.transform(src["lon"].to_numpy(), src["lat"].to_numpy())
    np.testing.assert_allclose(got.loc[src["id"]].geometry.x, x, atol=0.01)
    assert (got.loc[src["id"], "permafrost"].to_numpy() == (table["pf"] == "yes").astype(int).to_numpy()).all()
    # GeoParquet: coordinates and CRS from its geometry, no x/y in the map
    gdf = gpd.GeoDataFrame(table[["site", "order"]], geometry=gpd.points_from_xy(e, n), crs="EPSG:32606")
    gdf.to_parquet(tmp_path / "mine.geoparquet")
    s2 = run_import_pedons(run, [str(tmp_path / "mine.geoparquet")], "table", "pedon_id=site,soil_order=order",
                           out=str(tmp_path / "geo.parquet"))
    got2 = gpd.read_parquet(s2.out).set_index("pedon_id")
    has = table["order"].notna().to_numpy()
    np.testing.assert_allclose(got2.loc[src["id"][has]].geometry.x, x[has], atol=0.01)
    assert _reasons(_report(s2), "5003") == ["no label left (neither permafrost nor soil order)"]


@pytest.mark.parametrize("horizons, order, expected", [
    ([("Oi", 0, 10), ("Bgf", 40, 150)], "Inceptisols", 1),
    ([("Oi", 0, 10), ("Bw", 10, 60), ("Cf", 100, 150)], "Gelisols", 0),  # frozen only from 100 cm
    ([("A", 0, 30), ("C", 30, 120)], None, 0),
    ([("A", 0, 30), ("C", 30, 70)], "Gelisols", pd.NA),  # described too shallow to tell
    ([("Oaff", 0, 20)], None, 1),  # dry permafrost
    ([], "Gelisols", 1),
    ([], "Mollisols", pd.NA),
])
def test_kssl_permafrost_rule(horizons, order, expected):
    frame = pd.DataFrame(horizons, columns=["hzn_desgn", "hzn_top", "hzn_bot"]) if horizons else None
    value, _ = kssl_permafrost(order, frame)
    assert (value is pd.NA and expected is pd.NA) or value == expected


@pytest.mark.parametrize("args, culprit", [
    (["{tmp}/nocoords.csv", "--layout", "table", "--columns", "pedon_id=site,soil_order=order"],
     "no coordinate columns"),
    (["{tmp}/nocoords.csv", "--layout", "kssl"], "expected one table with pedon coordinates"),
    (["{tmp}/nocoords.csv", "--layout", "miso"], "no MISO point-data column(s) ['id', 'lon', 'lat']"),
    (["{tmp}/nocoords.csv", "--layout", "nasis"], "--layout 'nasis'"),
    (["{tmp}/absent.csv", "--layout", "kssl"], "absent.csv does not exist"),
    ([KSSL[0], KSSL[1], "--layout", "kssl", "--out", "{tmp}/foreign.parquet"], "was not written by import-pedons"),
])
def test_bad_pedon_files_one_line_exit_2(run, tmp_path, capsys, args, culprit):
    pd.DataFrame({"site": ["a", "b"], "order": ["Gelisols", "Entisols"]}).to_csv(tmp_path / "nocoords.csv", index=False)
    (tmp_path / "foreign.parquet").write_bytes(b"someone else's")
    cfg = tmp_path / "run.yaml"
    code, text = run_in_process(["import-pedons", *[a.format(tmp=tmp_path) for a in args], "-c", str(cfg)], capsys)
    errors = [ln for ln in text.splitlines() if "ERROR" in ln]
    assert code == 2 and len(errors) == 1 and culprit in errors[0], text
    assert (tmp_path / "foreign.parquet").read_bytes() == b"someone else's"
