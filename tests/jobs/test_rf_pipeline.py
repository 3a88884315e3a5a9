"""The RF baseline end to end on a small contract-following world: labels → cube sampled at pedons
→ folds → cross-validated RF → report → map; and every bad input of the issue."""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import Point
from typer.testing import CliRunner

from misomap.cli import app
from misomap.config import config_from_dict
from misomap.core.inputs import INPUT_CLASSES
from misomap.cube.grid import Grid
from misomap.cube.store import COMPLETE_KEY, template
from misomap.labels.pedons import LabelsError, read_labels
from misomap.labels.training_table import TrainingTableError, sample_cube
from misomap.mapping.layers import NODATA
from tests.support.label_layers import write_regions_and_zones

RES, SIZE, CHUNK = 250.0, 160, 64  # 40 km square, chunks that do not divide it
GRID = Grid("EPSG:3338", RES, 200_000.0, 1_500_000.0, 200_000.0 + SIZE * RES, 1_500_000.0 + SIZE * RES)
BANDS = ["s2_summer_blue", "s2_summer_red", "s2_summer_nir", "s2_summer_swir16",
         "s1_summer_vv_db", "elevation", "slope", "jan_min_temp", "precip_annual"]
NODATA_BOX = (slice(0, 20), slice(140, 160))  # rows, cols of an all-NaN corner
OPTICAL_HOLE = (slice(100, 130), slice(20, 70))  # no clear optical observation: s2_* bands NaN only


def _smooth(rng: np.random.Generator, cells: int = 8) -> np.ndarray:
    """A smooth random field on the grid: coarse noise upsampled bilinearly."""
    coarse = rng.normal(size=(cells + 1, cells + 1))
    t = np.linspace(0, cells, SIZE, endpoint=False)
    i, f = t.astype(int), t - t.astype(int)
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return (rows[:, i] * (1 - f) + rows[:, i + 1] * f).astype(np.float32)


def _world(tmp_path) -> dict:
    """Cube (Zarr v3, contract §2), pedons, regions and zones (contract §1) with learnable labels."""
    rng = np.random.default_rng(42)
    fields = np.stack([_smooth(rng) for _ in BANDS])
    fields[BANDS.index("jan_min_temp")] += np.linspace(-1.5, 1.5, SIZE)[:, None]  # colder north
    fields[:, NODATA_BOX[0], NODATA_BOX[1]] = np.nan
    ds = template(GRID, BANDS, CHUNK, {"source": "test world",
                                          "imagery_datetime": ["2019-06-15T00:00:00Z", "2023-08-15T00:00:00Z"]})
    observed = fields.copy()  # labels follow the ground; the cube misses optical data in the hole
    observed[[i for i, b in enumerate(BANDS) if b.startswith("s2_")], OPTICAL_HOLE[0], OPTICAL_HOLE[1]] = np.nan
    ds["data"] = (("band", "y", "x"), observed, {"grid_mapping": "spatial_ref"})
    ds.attrs[COMPLETE_KEY] = {"records_sha256": "written-whole", "chunks": 0}  # written whole: finished
    cube = tmp_path / "cube.zarr"
    ds.chunk({"band": -1, "y": CHUNK, "x": CHUNK}).to_zarr(cube, zarr_format=3, consolidated=True)

    sites = rng.uniform([2, 2], [SIZE - 2, SIZE - 2], (45, 2))
    pix = sites[rng.integers(0, len(sites), 420)] + rng.normal(0, 1.5, (420, 2))
    pix = np.clip(pix, 0, SIZE - 1).astype(int)
    pix = pix[~((pix[:, 0] < 20) & (pix[:, 1] >= 140))]  # only `on_nodata` below sits on nodata
    r, c = pix[:, 0], pix[:, 1]
    cold = -fields[BANDS.index("jan_min_temp"), r, c]
    wet = -fields[BANDS.index("s2_summer_nir"), r, c]
    high = fields[BANDS.index("elevation"), r, c]
    pf = (np.nan_to_num(cold) + rng.normal(0, 0.3, len(r)) > 0).astype(int)
    so = np.select([pf == 1, wet > 0.6, high > 0.5], ["Gelisols", "Histosols", "Spodosols"],
                   "Inceptisols").astype(object)
    so[rng.random(len(r)) < 0.05] = "Entisols"
    x, y = GRID.x_coords()[c], GRID.y_coords()[r]
    pedons = pd.DataFrame({"pedon_id": [f"ped{i:04d}" for i in range(len(r))],
                           "permafrost": pd.array(pf, dtype="Int8"), "soil_order": so, "x": x, "y": y})
    pedons.loc[0:30, "permafrost"] = pd.NA  # soil order only
    pedons.loc[31:50, "soil_order"] = None  # permafrost only
    extra = pd.DataFrame({  # outside, on nodata, unlabelled
        "pedon_id": ["outside", "on_nodata", "unlabelled"],
        "permafrost": pd.array([1, 0, pd.NA], dtype="Int8"), "soil_order": ["Gelisols", None, None],
        "x": [GRID.xmin - 15_000, GRID.x_coords()[150], GRID.x_coords()[5]],
        "y": [GRID.ymax - 1_000, GRID.y_coords()[5], GRID.y_coords()[5]]})
    pedons = pd.concat([pedons, extra], ignore_index=True)
    gdf = gpd.GeoDataFrame(pedons.drop(columns=["x", "y"]), crs="EPSG:3338",
                           geometry=gpd.points_from_xy(pedons["x"], pedons["y"]))
    labels = tmp_path / "world" / "labels"
    labels.mkdir(parents=True)
    gdf.to_parquet(labels / "pedons.parquet")
    write_regions_and_zones(labels, GRID)
    return {"cube": str(cube), "world": str(tmp_path / "world"), "labels": labels}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return _world(tmp_path_factory.mktemp("rfworld"))


def _config(world: dict, workdir, **extra):
    return config_from_dict({"workdir": str(workdir), "seed": 7,
                             "labels": {"world": world["world"], "cube": world["cube"]},
                             "folds": {"block_size_m": 10_000, "dbscan_eps_m": [1000, 4000]},
                             "rf": {"n_estimators": 25}, **extra})


def test_labels_tagged_with_region_and_zone_unlabelled_dropped(world, caplog):
    cfg = _config(world, "unused")
    with caplog.at_level(logging.WARNING):
        pedons = read_labels(cfg.labels, cfg.storage)
    assert "unlabelled" not in set(pedons["pedon_id"])
    assert "1 pedon(s) have neither permafrost nor soil_order" in caplog.text
    assert set(pedons["region"].dropna()) == {"west", "east"}
    assert set(pedons["zone"].dropna()) == {"continuous", "discontinuous"}
    assert pedons.loc[pedons["pedon_id"] == "outside", "region"].isna().all()  # outside every polygon
    west = pedons[pedons.geometry.x < (GRID.xmin + GRID.xmax) / 2]
    assert (west["region"] == "west").all()


@pytest.mark.parametrize("mutate,match", [
    (lambda g: g.drop(columns="soil_order"), r"missing column\(s\) \['soil_order'\]"),
    (lambda g: g.assign(soil_order=["Oxisols"] + list(g["soil_order"][1:])),
     r"pedon 'ped0000' has soil_order='Oxisols'"),
    (lambda g: g.assign(permafrost=pd.array([2] + [1] * (len(g) - 1), dtype="Int8")),
     r"pedon 'ped0000' has permafrost=2"),
    (lambda g: g.set_crs(None, allow_override=True), "has no CRS"),
])
def test_bad_label_files_named(world, tmp_path, mutate, match):
    bad = mutate(gpd.read_parquet(world["labels"] / "pedons.parquet"))
    bad.to_parquet(tmp_path / "pedons.parquet")
    cfg = config_from_dict({"labels": {"pedons": str(tmp_path / "pedons.parquet")}})
    with pytest.raises(LabelsError, match=match):
        read_labels(cfg.labels, cfg.storage)


def test_missing_label_file_named(tmp_path):
    cfg = config_from_dict({"labels": {"world": str(tmp_path / "nowhere")}})
    with pytest.raises(LabelsError, match="file not found: .*nowhere/labels/pedons.parquet"):
        read_labels(cfg.labels, cfg.storage)


def test_sampling_drops_outside_and_nodata_pedons(world, caplog):
    cfg = _config(world, "unused")
    pedons = read_labels(cfg.labels, cfg.storage)
    data = xr.open_zarr(world["cube"])["data"]
    with caplog.at_level(logging.WARNING):
        table = sample_cube(data, pedons, window=3)
    ids = set(table["pedon_id"])
    assert "outside" not in ids and "on_nodata" not in ids
    assert "1 pedon(s) outside the cube, dropped: ['outside']" in caplog.text
    assert "1 pedon(s) on nodata pixels, dropped: ['on_nodata']" in caplog.text
    row = table.iloc[0]
    expected = data.sel(x=row["x"], y=row["y"], method="nearest").values
    assert np.allclose(row[BANDS].to_numpy(dtype=float), expected)
    win = data.isel(y=slice(row["row"] - 1, row["row"] + 2), x=slice(row["col"] - 1, row["col"] + 2))
    assert row["elevation_wmean"] == pytest.approx(float(win.sel(band="elevation").mean()), rel=1e-5)
    assert table.crs.to_string() == "EPSG:3338"


def test_all_pedons_outside_cube_is_an_error(world):
    pedons = gpd.GeoDataFrame({"pedon_id": ["a"], "permafrost": [1], "soil_order": ["Gelisols"],
                               "region": [None], "zone": [None]},
                              geometry=[Point(0, 0)], crs="EPSG:3338")
    with pytest.raises(TrainingTableError, match="none of the 1 pedons lies inside the cube"):
        sample_cube(xr.open_zarr(world["cube"])["data"], pedons)


def test_train_rf_then_evaluate_end_to_end(world, tmp_path, caplog):
    from misomap.jobs.train_rf import train_rf

    workdir = tmp_path / "run"
    cfg = _config(world, workdir)
    with caplog.at_level(logging.WARNING):
        train_rf(cfg)
    training, model = workdir / "training", workdir / "models" / "rf"
    folds = pd.read_parquet(training / "folds.parquet")
    table = gpd.read_parquet(training / "table.parquet")
    assert list(folds.columns) == ["pedon_id", "random", "dbscan_1km", "dbscan_4km", "blocks",
                                   "region", "zone"]
    assert set(folds["pedon_id"]) == set(table["pedon_id"])
    preds = pd.read_parquet(model / "predictions.parquet")
    # each labelled pedon is predicted exactly once per scheme and never by a forest that saw it
    pf = preds[(preds["target"] == "permafrost") & (preds["scheme"] == "random")]
    assert pf["pedon_id"].is_unique and len(pf) == table["permafrost"].notna().sum()
    joined = pf.merge(folds[["pedon_id", "random"]], on="pedon_id")
    assert (joined["fold"] == joined["random"]).all()
    # a left-out fold can lack a class: metrics stay defined, a warning is logged
    assert "absent in soil_order/region/fold" in caplog.text
    so_folds = pd.read_csv(model / "report" / "soil_order_per_fold.csv")
    assert so_folds["recall_Andisols"].isna().all() and so_folds["accuracy"].notna().all()
    for name in ("permafrost.skops", "soil_order.skops"):
        assert (model / name).read_bytes()[:2] == b"PK"
    per_fold = pd.read_csv(model / "report" / "permafrost_per_fold.csv")
    random_acc = per_fold.loc[per_fold["scheme"] == "random", "accuracy"].mean()
    majority = max(table["permafrost"].mean(), 1 - table["permafrost"].mean())
    assert random_acc > majority + 0.05, "the RF should beat the majority class on held-out folds"
    report = model / "report" / "report.md"
    first = report.read_text()
    assert "| dbscan_4km |" in first and "By distance to the nearest training pedon" in first

    report.unlink()
    (tmp_path / "run.yaml").write_text(cfg.model_dump_json())
    res = CliRunner().invoke(app, ["evaluate", "--config", str(tmp_path / "run.yaml"), "--model", "rf"])
    assert res.exit_code == 0, res.output
    assert report.read_text() == first


def test_rf_map_is_a_georeferenced_cog(world, tmp_path):
    cfg = _config(world, tmp_path / "run", folds={"k": 2, "dbscan_eps_m": [1000.0, 60000.0],
                                                   "regions": False, "zones": False})
    (tmp_path / "run.yaml").write_text(cfg.model_dump_json())
    res = CliRunner().invoke(app, ["train-rf", "--config", str(tmp_path / "run.yaml"), "--map"])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "run" / "models" / "rf" / "report" / "report.md").read_text()
    assert "without predictions (no usable folds, see the folds log): ['dbscan_60km']" in report
    out = tmp_path / "run" / "maps" / "rf"
    for path in (out / "cogs" / "permafrost_probability.tif", out / "cogs" / "soil_order_class.tif"):
        assert cog_validate(path)[0], path
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 3338 and src.transform == GRID.transform
            assert (src.width, src.height) == (SIZE, SIZE)
            band = src.read(1, masked=True)
        assert band.mask[NODATA_BOX].all() and not band.mask[60:100, 60:100].any()
    with rasterio.open(out / "cogs" / "permafrost_probability.tif") as src:
        prob = src.read(1, masked=True) * src.scales[0]
    assert prob.min() >= 0 and prob.max() <= 1 and prob.std() > 0.05
    assert (out / "quicklook.png").read_bytes()[:4] == b"\x89PNG"
    # no hole where only the optical bands are missing: filled there, and the inputs layer says so
    ds = xr.open_zarr(out / "map.zarr", mask_and_scale=False)
    inputs, cls = ds["inputs_used"].values, ds["soil_order_class"].values
    assert (inputs[OPTICAL_HOLE] == INPUT_CLASSES.index("radar_static")).all()
    assert (cls[OPTICAL_HOLE] != NODATA).all() and (ds["permafrost_class"].values[OPTICAL_HOLE] != NODATA).all()
    assert (inputs[NODATA_BOX] == 0).all() and (cls[NODATA_BOX] == NODATA).all()
    rest = np.ones(inputs.shape, bool)
    rest[OPTICAL_HOLE] = rest[NODATA_BOX] = False
    assert (inputs[rest] == INPUT_CLASSES.index("optical_radar_static")).all() and (cls[rest] != NODATA).all()
    with rasterio.open(out / "cogs" / "inputs_used.tif") as src:
        assert (src.read(1) == inputs).all() and src.nodata == NODATA
    # held out, the hole's pedons are predicted (by the fold's fallback forest), as the map does
    table = gpd.read_parquet(tmp_path / "run" / "training" / "table.parquet")
    in_hole = table["row"].between(100, 129) & table["col"].between(20, 69)
    preds = pd.read_parquet(tmp_path / "run" / "models" / "rf" / "predictions.parquet")
    assert in_hole.sum() >= 5 and set(table.loc[in_hole, "pedon_id"]) <= set(preds["pedon_id"])


def test_labels_and_outputs_on_s3(world, s3_server, s3fs_filesystem, s3_bucket, monkeypatch):
    """Labels read from and every output (table, folds, models, report) written to real S3, with
    credentials from the environment only."""
    from misomap.jobs.train_rf import train_rf

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    root = f"{s3_bucket}/world/labels"
    for name in ("pedons", "regions", "permafrost_zones"):
        s3fs_filesystem.put_file(str(world["labels"] / f"{name}.parquet"), f"{root}/{name}.parquet")
    cfg = _config(world, f"s3://{s3_bucket}/run", storage={"endpoint_url": s3_server.endpoint_url},
                  labels={"world": f"s3://{s3_bucket}/world", "cube": world["cube"]},
                  folds={"k": 2, "dbscan_eps_m": [1000.0], "regions": False, "zones": False},
                  rf={"n_estimators": 10})
    out = train_rf(cfg)
    assert out.report == f"s3://{s3_bucket}/run/models/rf/report/report.md"
    s3fs_filesystem.invalidate_cache()
    for key in ("training/table.parquet", "training/folds.parquet", "models/rf/predictions.parquet",
                "models/rf/soil_order.skops", "models/rf/report/permafrost_confusion.png"):
        assert s3fs_filesystem.exists(f"{s3_bucket}/run/{key}"), key
    assert "| random |" in s3fs_filesystem.cat_file(f"{s3_bucket}/run/models/rf/report/report.md").decode()


@pytest.mark.slow
def test_rf_on_the_tiny_demo_world(demo_world, demo_stac_api, tmp_path):
    """Demo world → STAC API → cube → training table → folds → RF → report, as a user runs it."""
    from misomap.jobs.build_cube import run_build_cube
    from misomap.demo.run_sections import S2_BANDS, cube_section
    from misomap.jobs.train_rf import train_rf

    cfg = config_from_dict({
        "workdir": str(tmp_path), "stac": {"url": demo_stac_api},
        "cube": cube_section(demo_world, str(tmp_path / "cube.zarr"), chunk=128),
        "labels": {"world": str(demo_world)}, "rf": {"n_estimators": 30},
        "folds": {"dbscan_eps_m": [100.0, 250.0], "block_size_m": 1500.0}})
    run_build_cube(cfg)
    train_rf(cfg)
    table = gpd.read_parquet(tmp_path / "training" / "table.parquet")
    assert {f"s2_summer_{b}" for b in S2_BANDS} | {"s1_summer_vv_db", "jan_min_temp"} <= set(table.columns)
    per_fold = pd.read_csv(tmp_path / "models" / "rf" / "report" / "permafrost_per_fold.csv")
    share = table["permafrost"].dropna().mean()
    for scheme in ("random", "blocks"):
        acc = per_fold.loc[per_fold["scheme"] == scheme, "accuracy"].mean()
        assert acc > max(share, 1 - share), f"{scheme}: the RF should beat the majority class"
