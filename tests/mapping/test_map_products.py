"""The map products as outside clients read them: plain xarray (local and over s3fs), rasterio and
GDAL itself, odc-stac, pystac and stac-validator with offline schemas. Nothing here imports misomap
to read a product; misomap only writes them."""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from misomap.config import config_from_dict
from misomap.core.classes import PERMAFROST_CLASSES, SOIL_ORDERS
from misomap.cube.grid import Grid
from misomap.jobs.predict import run_predict
from misomap.mapping.export import MapExportError, stac_ids
from misomap.mapping.layers import LAYERS, MapProbabilities, encode_layers
from tests.support import ROOT
from tests.support.map_cube import FACTORY, IMAGERY_PERIOD, write_cube
from tests.support.stac_schemas import schema_files, tree_errors

GRID = Grid("EPSG:3338", 30.0, 300000.0, 1710000.0, 300000.0 + 90 * 30, 1710000.0 + 70 * 30)
CLASS_LAYERS = {"permafrost_class": PERMAFROST_CLASSES, "soil_order_class": SOIL_ORDERS}


@pytest.fixture(autouse=True)
def _importable_test_predictor(monkeypatch):
    tests = str(ROOT)
    monkeypatch.syspath_prepend(tests)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))


def _map_config(root: Path, zarr_format: int = 3, cogs: bool = True):
    return config_from_dict({"name": "t", "map": {
        "cube": str(root / "cube.zarr"), "output": str(root / "maps" / f"v{zarr_format}"), "model": FACTORY,
        "model_path": str(root / "models" / "model.bin"), "chunk_px": 32, "workers": 1,
        "zarr_format": zarr_format, "cogs": cogs}})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A run folder as misomap lays it out: the cube, a model file, and a v3 map with every product
    and a v2 map (Zarr only) made from them."""
    root = tmp_path_factory.mktemp("products")
    write_cube(root / "cube.zarr", GRID)
    (root / "models").mkdir()
    (root / "models" / "model.bin").write_bytes(b"weights of a test model\n" * 40)
    mp = pytest.MonkeyPatch()
    tests = str(ROOT)
    mp.syspath_prepend(tests)
    mp.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    try:
        run_predict(_map_config(root, 3))
        run_predict(_map_config(root, 2, cogs=False))
    finally:
        mp.undo()
    return root


def _item_path(out: Path) -> Path:
    (path,) = glob.glob(str(out / "stac" / "*" / "*.json"))
    return Path(path)


# --- Zarr --------------------------------------------------------------------------------------

@pytest.mark.parametrize("zarr_format", [2, 3])
def test_missing_chunk_reads_as_nodata_in_every_layer(workdir, tmp_path, zarr_format):
    store = workdir / "maps" / f"v{zarr_format}" / "map.zarr"
    group = zarr.open_group(store, mode="r")
    for layer in LAYERS:
        assert group[layer.name].fill_value == 255, layer.name
    copy = tmp_path / "map.zarr"
    shutil.copytree(store, copy)
    for layer in LAYERS:  # chunk (1, 1): rows and cols 32..63, written by the run
        arr = zarr.open_array(copy, path=layer.name, mode="r")
        coords = (0, 1, 1) if layer.per_class else (1, 1)
        chunk_file = copy / layer.name / arr.metadata.encode_chunk_key(coords)
        assert chunk_file.is_file(), chunk_file
        chunk_file.unlink()
    before, after = xr.open_zarr(store).load(), xr.open_zarr(copy).load()
    block = {"y": slice(32, 64), "x": slice(32, 64)}
    for layer in LAYERS:
        assert np.isfinite(before[layer.name][block].values).any(), "the chunk held values"
        assert np.isnan(after[layer.name][block].values).all(), f"{layer.name}: a lost chunk must read NaN"
        outside = after[layer.name].values.copy()
        outside[..., 32:64, 32:64] = 0
        expected = before[layer.name].values.copy()
        expected[..., 32:64, 32:64] = 0
        np.testing.assert_array_equal(outside, expected)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_metadata_has_only_specified_types_axes_and_crs(workdir, zarr_format):
    from pyproj import CRS

    store = workdir / "maps" / f"v{zarr_format}" / "map.zarr"
    group = zarr.open_group(store, mode="r")
    for name, arr in group.arrays():
        assert arr.dtype.kind in "uif", f"{name}: {arr.dtype} (no string data types)"
    ds = xr.open_zarr(store)
    assert ds.x.attrs["axis"] == "X" and ds.y.attrs["axis"] == "Y"
    assert ds.soil_order.values.tolist() == list(range(len(SOIL_ORDERS)))
    assert ds.soil_order.attrs["flag_meanings"].split() == list(SOIL_ORDERS)
    for layer in LAYERS:
        assert CRS.from_wkt(ds[layer.name].attrs["_CRS"]["wkt"]).to_epsg() == 3338
        assert ds[layer.name].attrs["grid_mapping"] == "spatial_ref"
    for name, classes in CLASS_LAYERS.items():
        assert ds[name].attrs["flag_meanings"].split() == list(classes)
        assert ds[name].attrs["flag_values"] == list(range(len(classes)))


def test_template_write_raises_no_unspecified_dtype_warning(tmp_path):
    from misomap.core.storage import Target
    from misomap.mapping.store import ensure_template

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ensure_template(Target(str(tmp_path / "m.zarr")), GRID, 32, 3, {}, "h")
    assert not [w for w in caught if "specification" in str(w.message) and "data type" in str(w.message)]


def test_classes_agree_with_stored_probabilities_over_the_whole_map(workdir):
    raw = xr.open_zarr(workdir / "maps" / "v3" / "map.zarr", mask_and_scale=False).load()
    pf, pf_class = raw["permafrost_probability"].values, raw["permafrost_class"].values
    so, so_class = raw["soil_order_probability"].values, raw["soil_order_class"].values
    valid = pf != 255
    assert valid.sum() > 4000 and (~valid).sum() > 0
    np.testing.assert_array_equal(pf_class == 255, ~valid)
    np.testing.assert_array_equal(pf_class[valid], (pf[valid] >= 50).astype(np.uint8))
    np.testing.assert_array_equal(so_class[valid], np.argmax(so[:, valid], axis=0))


def test_encoding_rounds_before_classifying():
    """P = 0.496 is stored as 50 % and so is class "present"; near-ties follow the stored percents."""
    pf = np.array([[0.496, 0.494, np.nan]], np.float32)
    so = np.zeros((7, 1, 3), np.float32)
    so[:2, 0, :] = [[0.4951, 0.2, 0.5], [0.5049, 0.8, 0.5]]  # pixel 0 stores 50 % and 50 %
    so[2:, 0, :] = 0.0
    out = encode_layers(MapProbabilities(pf, so))
    assert out["permafrost_probability"].tolist() == [[50, 49, 255]]
    assert out["permafrost_class"].tolist() == [[1, 0, 255]]
    assert out["soil_order_probability"][:2, 0, 0].tolist() == [50, 50]
    assert out["soil_order_class"][0, 0] == 0  # first of the stored maxima
    assert out["soil_order_class"][0, 1] == 1


def test_certain_pixels_have_zero_entropy_not_nodata():
    pf = np.array([[0.0, 1.0, 0.5]], np.float32)
    so = np.zeros((7, 1, 3), np.float32)
    so[0, 0, 0] = so[6, 0, 1] = 1.0
    so[:, 0, 2] = 1 / 7
    out = encode_layers(MapProbabilities(pf, so))
    assert out["permafrost_entropy"].tolist() == [[0, 0, 100]]
    assert out["soil_order_entropy"].tolist() == [[0, 0, 100]]


def test_cube_without_dates_refused_before_work(tmp_path):
    cube = tmp_path / "cube.zarr"
    write_cube(cube, GRID)
    zarr.open_group(cube, mode="r+").attrs.put({})
    zarr.consolidate_metadata(str(cube))
    out = tmp_path / "map"
    cfg = config_from_dict({"name": "t", "map": {"cube": str(cube), "output": str(out), "model": FACTORY}})
    with pytest.raises(MapExportError, match=f"cube {cube} records no imagery dates"):
        run_predict(cfg)
    assert not (out / "map.zarr").exists()


# --- COGs through GDAL -------------------------------------------------------------------------

def _gdal():
    import rasterio

    path = glob.glob(os.path.join(os.path.dirname(rasterio.__file__), "..", "rasterio.libs", "libgdal-*.so*"))
    lib = ctypes.CDLL(path[0])
    lib.GDALAllRegister()
    lib.GDALOpenEx.restype = ctypes.c_void_p
    lib.GDALOpenEx.argtypes = [ctypes.c_char_p, ctypes.c_uint] + [ctypes.c_void_p] * 3
    lib.GDALGetProjectionRef.restype = ctypes.c_char_p
    lib.GDALGetProjectionRef.argtypes = [ctypes.c_void_p]
    lib.GDALGetRasterBand.restype = ctypes.c_void_p
    lib.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALGetRasterCategoryNames.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.GDALGetRasterCategoryNames.argtypes = [ctypes.c_void_p]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.CPLSetThreadLocalConfigOption.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib


def gdal_category_names(path: str) -> list[str]:
    """Band 1's category names as GDAL (the library under QGIS and gdalinfo) reports them."""
    lib = _gdal()
    # a client's GDAL with default settings: this test process also runs the cube reader, whose
    # rasterio environments set GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR (no sidecar files) for speed
    lib.CPLSetThreadLocalConfigOption(b"GDAL_DISABLE_READDIR_ON_OPEN", b"FALSE")
    ds = lib.GDALOpenEx(path.encode(), 0, None, None, None)
    assert ds, f"GDAL cannot open {path}"
    try:
        lib.GDALGetProjectionRef(ds)  # as every client does first; it also loads the .aux.xml
        names = lib.GDALGetRasterCategoryNames(lib.GDALGetRasterBand(ds, 1))
        out, i = [], 0
        while names and names[i] is not None:
            out.append(names[i].decode())
            i += 1
        return out
    finally:
        lib.GDALClose(ds)
        lib.CPLSetThreadLocalConfigOption(b"GDAL_DISABLE_READDIR_ON_OPEN", None)


def test_cogs_name_classes_and_bands_for_gdal(workdir):
    import rasterio

    cogs = workdir / "maps" / "v3" / "cogs"
    for name, classes in CLASS_LAYERS.items():
        assert gdal_category_names(str(cogs / f"{name}.tif")) == list(classes)
        with rasterio.open(cogs / f"{name}.tif") as src:
            assert src.colorinterp[0].name == "palette" and src.nodata == 255
    with rasterio.open(cogs / "soil_order_probability.tif") as src:
        assert src.descriptions == SOIL_ORDERS
    with rasterio.open(cogs / "permafrost_probability.tif") as src:
        assert gdal_category_names(str(cogs / "permafrost_probability.tif")) == []
        assert src.descriptions == ("permafrost_probability",) and src.scales == (0.01,)


def test_class_cog_written_without_palette_warning(workdir, tmp_path):
    from misomap.mapping.export import write_cog

    group = zarr.open_group(workdir / "maps" / "v3" / "map.zarr", mode="r")
    layer = next(lyr for lyr in LAYERS if lyr.name == "soil_order_class")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_cog(group[layer.name], layer, GRID, tmp_path / "c.tif", tmp_path)
    assert not [w for w in caught if "Palette" in str(w.message)]
    assert gdal_category_names(str(tmp_path / "c.tif")) == list(SOIL_ORDERS)


# --- STAC --------------------------------------------------------------------------------------

def _schema_map() -> dict[str, str]:
    """Every upstream schema a misomap catalog declares (tests/data/stac-schemas), by URL: the core
    STAC 1.1.0 schemas and each extension at its declared version. stac-validator never needs the
    network."""
    return {url: str(path) for url, path in schema_files().items()}


def test_stac_validator_offline_accepts_catalog_and_catches_errors(workdir, tmp_path):
    from stac_validator.validate import StacValidate

    schema_map = _schema_map()
    out = workdir / "maps" / "v3"
    v = StacValidate(str(out / "stac" / "collection.json"), recursive=True, schema_map=schema_map)
    assert v.run(), v.message
    checked = {m["asset_type"] for m in v.message}
    assert checked == {"COLLECTION", "ITEM"}
    item = json.loads(_item_path(out).read_text())
    assert "https://stac-extensions.github.io/mlm/v1.4.0/schema.json" in item["stac_extensions"]
    model_key = next(k for k, a in item["assets"].items() if "mlm:model" in a["roles"])
    breakages = [
        lambda d: d["assets"][model_key].pop("mlm:artifact_type"),
        lambda d: d["properties"].pop("mlm:architecture"),
        lambda d: d["assets"]["soil_order_class"]["classification:classes"][0].update(name="two words"),
        lambda d: d["assets"]["zarr"].update({"file:checksum": "XYZ"}),
        lambda d: d["properties"].update({"proj:shape": [70]}),
    ]
    for breakage in breakages:
        bad = json.loads(json.dumps(item))
        breakage(bad)
        assert not StacValidate(schema_map=schema_map).validate_dict(bad)


def test_every_map_stac_document_passes_the_upstream_schemas(workdir):
    """Core STAC 1.1.0 and each declared extension at its declared version, as upstream publishes
    them (MLM 1.4.0 checks output classes against classification 1.1.0, which needs descriptions)."""
    found = tree_errors(workdir / "maps" / "v3" / "stac")
    assert len(found) == 2 and all(not e for e in found.values()), found
    item = json.loads(_item_path(workdir / "maps" / "v3").read_text())
    for output in item["properties"]["mlm:output"]:
        for cls in output["classification:classes"]:
            assert cls["description"], cls


def test_stac_dates_ids_and_self_description(workdir):
    import pystac

    out = workdir / "maps" / "v3"
    col = pystac.Collection.from_file(str(out / "stac" / "collection.json"))
    item = next(iter(col.get_items()))
    assert item.datetime is None
    assert [item.properties["start_datetime"], item.properties["end_datetime"]] == IMAGERY_PERIOD
    interval = col.extent.temporal.intervals[0]
    assert [pystac.utils.datetime_to_str(t) for t in interval] == IMAGERY_PERIOD
    run_hash = zarr.open_group(out / "map.zarr", mode="r").attrs["misomap_run_hash"]
    assert item.id == f"{col.id}-{run_hash[:12]}"
    assert col.providers and col.summaries.to_dict()["proj:code"] == ["EPSG:3338"]
    assert set(col.item_assets) >= {layer.name for layer in LAYERS} | {"zarr", "thumbnail"}
    assert col.assets["thumbnail"].roles == ["thumbnail"] and item.assets["thumbnail"].roles == ["thumbnail"]
    for name, classes in CLASS_LAYERS.items():
        got = item.assets[name].extra_fields["classification:classes"]
        assert [c["name"] for c in got if not c.get("nodata")] == list(classes)
    eo_bands = item.assets["soil_order_probability"].extra_fields["eo:bands"]
    assert [b["name"] for b in eo_bands] == list(SOIL_ORDERS)
    props = item.properties
    assert props["mlm:input"][0]["bands"] == ["b0", "b1"]
    assert [o["name"] for o in props["mlm:output"]] == ["permafrost", "soil_order"]
    (model,) = [a for a in item.assets.values() if "mlm:model" in a.roles]
    digest = hashlib.sha256((workdir / "models" / "model.bin").read_bytes()).hexdigest()
    assert model.extra_fields["file:checksum"] == "1220" + digest
    for key, asset in item.assets.items():
        assert not os.path.isabs(asset.href) and "://" not in asset.href, (key, asset.href)
        if key != "zarr":
            assert asset.extra_fields["file:checksum"].startswith("1220"), key


def test_ids_unique_per_model_and_run():
    def cfg(model: str):
        return config_from_dict({"name": "demo", "map": {"cube": "c.zarr", "output": "o", "model": model}})

    def ids(model: str, run_hash: str):
        run = cfg(model)
        return stac_ids(run.map, run.name, run_hash)

    rf, miso = ids("rf", "a" * 64), ids("miso", "a" * 64)
    assert rf[0] != miso[0] and rf[1] != miso[1]
    assert ids("rf", "b" * 64)[1] != rf[1] and ids("rf", "b" * 64)[0] == rf[0]


def test_odc_stac_loads_every_band_by_name(workdir):
    import odc.stac
    import pystac
    import rasterio

    out = workdir / "maps" / "v3"
    item = pystac.Item.from_file(str(_item_path(out)))
    singles = [layer.name for layer in LAYERS if not layer.per_class]
    ds = odc.stac.load([item], bands=singles + list(SOIL_ORDERS), chunks=None)
    assert str(ds.time.values[0])[:10] == IMAGERY_PERIOD[0][:10]
    assert (ds.sizes["y"], ds.sizes["x"]) == GRID.shape
    for name in singles:
        with rasterio.open(out / "cogs" / f"{name}.tif") as src:
            np.testing.assert_array_equal(ds[name].values[0], src.read(1))
    with rasterio.open(out / "cogs" / "soil_order_probability.tif") as src:
        for i, order in enumerate(SOIL_ORDERS, start=1):
            np.testing.assert_array_equal(ds[order].values[0], src.read(i))
    assert ds["soil_order_class"].dtype == np.uint8 and ds["soil_order_class"].attrs["nodata"] == 255


class _FsspecStacIO:
    """pystac I/O through fsspec, the way an analyst reads a catalog on S3."""

    def __new__(cls, storage_options):
        import fsspec
        import pystac

        class IO(pystac.StacIO):
            def read_text(self, source, *args, **kwargs) -> str:
                with fsspec.open(str(source), "r", **storage_options) as fh:
                    return fh.read()

            def write_text(self, dest, txt, *args, **kwargs) -> None:
                raise AssertionError("read only")

        return IO()


def test_catalog_copied_to_s3_resolves_every_asset_and_link(workdir, s3_server, s3fs_filesystem, s3_bucket,
                                                            monkeypatch):
    import pystac
    import rasterio

    for k, v in s3_server.env().items():  # GDAL takes credentials from the environment
        monkeypatch.setenv(k, v)
    s3fs_filesystem.put(str(workdir) + "/", f"{s3_bucket}/run", recursive=True)
    so = s3_server.storage_options()
    base = f"s3://{s3_bucket}/run/maps/v3"
    col = pystac.Collection.from_file(f"{base}/stac/collection.json", stac_io=_FsspecStacIO(so))
    item = next(iter(col.get_items()))
    local = workdir / "maps" / "v3"
    gdal_env = {"AWS_S3_ENDPOINT": s3_server.endpoint_url.split("://")[1], "AWS_HTTPS": "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE"}
    opened = set()
    for key, asset in item.assets.items():
        href = asset.get_absolute_href()
        assert href.startswith(f"s3://{s3_bucket}/run/"), (key, href)
        if asset.media_type == pystac.MediaType.COG:
            with rasterio.Env(**gdal_env):
                with rasterio.open(href.replace("s3://", "/vsis3/")) as src, \
                        rasterio.open(local / "cogs" / f"{key}.tif") as ref:
                    np.testing.assert_array_equal(src.read(), ref.read())
                if key in CLASS_LAYERS:
                    assert gdal_category_names(href.replace("s3://", "/vsis3/")) == list(CLASS_LAYERS[key])
        elif key == "zarr":
            remote = xr.open_zarr(href, storage_options=so).load()
            xr.testing.assert_identical(remote, xr.open_zarr(local / "map.zarr").load())
        else:
            with s3fs_filesystem.open(href, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            assert asset.extra_fields["file:checksum"] == "1220" + digest, key
        opened.add(key)
    assert opened == set(item.assets) and len(opened) >= 11
    assert not [link for link in item.links if link.rel == "derived_from"], "a local cube is not linked"
    assert item.properties["misomap:input_cube"]["name"] == "cube.zarr"
    lineage = xr.open_zarr(workdir / "cube.zarr").attrs.get("misomap") or {}
    assert item.properties["misomap:input_cube"].get("fingerprint") == lineage.get("fingerprint")


def test_links_inside_the_folder_relative_remote_kept_local_outside_dropped(tmp_path):
    from misomap.mapping.export import link_href

    out = "s3://b/run/maps/rf"
    item_dir = f"{out}/stac/x"
    assert link_href(f"{out}/model/m.bin", out, item_dir) == "../../model/m.bin"
    assert link_href("s3://b/run/cube.zarr", out, item_dir) == "s3://b/run/cube.zarr"
    assert link_href("s3://other/cube.zarr", out, item_dir) == "s3://other/cube.zarr"
    local_out = str(tmp_path / "maps" / "rf")
    assert link_href(str(tmp_path / "cube.zarr"), local_out, f"{local_out}/stac/x") is None
    assert link_href(str(tmp_path / "maps" / "rf-other" / "m.bin"), local_out, f"{local_out}/stac/x") is None
    assert link_href(f"{local_out}/model/m.bin", local_out, f"{local_out}/stac/x") == "../../model/m.bin"


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_no_output_names_a_local_path(workdir, zarr_format):
    """Every file of the map folder (Zarr metadata, STAC, COG tags, side files, viewer, quicklook),
    read as bytes: none holds the folder the run wrote in; copied alone the folder resolves."""
    out = workdir / "maps" / f"v{zarr_format}"
    needles = [str(workdir).encode(), str(workdir.resolve()).encode(), os.path.expanduser("~").encode() + b"/"]
    files = [p for p in out.rglob("*") if p.is_file() and "_progress" not in p.parts]
    assert len(files) > (20 if zarr_format == 3 else 5)
    for path in files:
        data = path.read_bytes()
        assert not [n for n in needles if n in data], path
    attrs = zarr.open_group(out / "map.zarr", mode="r").attrs
    assert attrs["misomap_input_cube"] == "cube.zarr" and attrs["misomap_model_path"] == "model.bin"
    if zarr_format == 3:
        import pystac

        alone = workdir / "copied-alone" / "v3"
        shutil.copytree(out, alone)
        item = pystac.Item.from_file(str(_item_path(alone)))
        for key, asset in item.assets.items():
            assert Path(asset.get_absolute_href()).exists(), (key, asset.href)
        for link in item.links:
            if link.rel not in ("self",):
                assert Path(link.get_absolute_href()).exists(), (link.rel, link.href)
        model = [a for a in item.assets.values() if "mlm:model" in a.roles]
        assert len(model) == 1 and model[0].href == "../../model/model.bin"
        assert Path(model[0].get_absolute_href()).read_bytes() == (workdir / "models" / "model.bin").read_bytes()


def test_quicklook_titles_the_model_and_paints_nodata_apart(tmp_path):
    """Nodata is drawn magenta (its own legend entry), never as a shade of the colour bar, and the
    title names the model: two models' quicklooks of the same map differ."""
    from PIL import Image

    from misomap.mapping.export import write_quicklook
    from misomap.mapping.layers import NODATA_COLOUR

    rng = np.random.default_rng(3)
    group = zarr.open_group(tmp_path / "q.zarr", mode="w")
    prob = rng.integers(0, 101, (60, 80)).astype(np.uint8)
    cls = rng.integers(0, len(SOIL_ORDERS), (60, 80)).astype(np.uint8)

    def magenta_share(gap: bool, title: str) -> tuple[float, bytes]:
        p, c = prob.copy(), cls.copy()
        if gap:
            p[:, :40] = 255
            c[:, :40] = 255
        group.create_array("permafrost_probability", data=p, overwrite=True)
        group.create_array("soil_order_class", data=c, overwrite=True)
        write_quicklook(group, tmp_path / "q.png", title)
        img = np.asarray(Image.open(tmp_path / "q.png").convert("RGB")).astype(int)
        return float(np.all(np.abs(img - NODATA_COLOUR) <= 2, axis=-1).mean()), (tmp_path / "q.png").read_bytes()

    full, png_rf = magenta_share(False, "t: model rf")
    gap, _ = magenta_share(True, "t: model rf")
    assert gap > full + 0.1, (full, gap)  # half of each panel: a large magenta area
    assert 0 < full < 0.01  # the legend swatches only
    _, png_miso = magenta_share(False, "t: model miso")
    assert png_rf != png_miso


def test_cog_copied_alone_still_names_its_classes_bands_and_colours(workdir, tmp_path):
    """What GDAL reads from inside the GeoTIFF (no .aux.xml beside it): per-band metadata (GDAL_METADATA
    tag) with the class names and nodata code, band descriptions, scale, nodata and colour table;
    GDAL's category names are the one thing that needs the side file."""
    import rasterio

    cogs = workdir / "maps" / "v3" / "cogs"
    for name, classes in CLASS_LAYERS.items():
        alone = tmp_path / name / f"{name}.tif"
        alone.parent.mkdir()
        shutil.copy(cogs / f"{name}.tif", alone)
        assert not list(alone.parent.glob("*.aux.xml"))
        with rasterio.open(alone) as src:
            tags = src.tags(1)
            assert [tags[f"class_{i}"] for i in range(len(classes))] == list(classes)
            assert tags["class_255"] == "nodata" and src.nodata == 255
            assert src.descriptions == (name,)
            colours = src.colormap(1)
            assert [colours[i][:3] for i in range(len(classes))] == [
                tuple(c) for c in next(lyr for lyr in LAYERS if lyr.name == name).colours]
        assert gdal_category_names(str(alone)) == []  # side-file only
    alone = tmp_path / "soil_order_probability.tif"
    shutil.copy(cogs / "soil_order_probability.tif", alone)
    with rasterio.open(alone) as src:
        assert src.descriptions == SOIL_ORDERS and src.scales == (0.01,) * len(SOIL_ORDERS)
        assert [src.tags(i + 1)["band_name"] for i in range(src.count)] == list(SOIL_ORDERS)
        assert src.tags(1)["units"] == "percent"


def test_published_version_stac_passes_the_upstream_schemas(workdir, tmp_path):
    """`misomap publish`'s catalog and version item: core STAC 1.1.0 as upstream publishes it."""
    from misomap.core.config_base import StorageConfig
    from misomap.publish.versions import publish

    root = tmp_path / "published"
    version, new = publish(str(workdir / "maps" / "v3"), str(root), StorageConfig(), "inputs", 2,
                           (-150.0, 60.0, -149.0, 61.0))
    found = tree_errors(root)
    assert new and {"catalog.json", f"versions/{version.id}/item.json"} <= set(found), found
    assert all(not e for e in found.values()), found
    for path in root.rglob("*.json"):
        assert str(workdir).encode() not in path.read_bytes(), path


# --- GeoZarr ------------------------------------------------------------------------------------

CONVENTION_SCHEMAS = ROOT / "tests" / "data" / "zarr-conventions"


def convention_errors(doc: dict, names: tuple[str, ...]) -> list[str]:
    """Errors of a Zarr v3 node document (zarr.json) against the upstream convention schemas."""
    from jsonschema import Draft7Validator

    errors = []
    for name in names:
        schema = json.loads((CONVENTION_SCHEMAS / f"{name}.schema.json").read_text())
        errors += [f"{name}: {e.message[:200]}" for e in Draft7Validator(schema).iter_errors(doc)]
    return errors


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_geozarr_georeferencing_and_overviews_read_by_plain_zarr_and_xarray(workdir, zarr_format):
    """GeoZarr `proj:`/`spatial:` beside CF and >= 2 `multiscales` overview levels, each a plain Zarr
    group that zarr and xarray open; a level holds every f-th pixel of every layer (classes still
    the argmax of the level's probabilities), placed where its `spatial:transform` says."""
    import rioxarray  # noqa: F401 - registers .rio
    from affine import Affine

    store = workdir / "maps" / f"v{zarr_format}" / "map.zarr"
    group = zarr.open_group(store, mode="r")
    attrs = dict(group.attrs)
    assert {c["uuid"] for c in attrs["zarr_conventions"]} == {
        "d35379db-88df-4056-af3a-620245f8e347", "f17cb550-5864-4468-aeb7-f3180cfb622f",
        "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4"}
    assert attrs["proj:code"] == "EPSG:3338" and attrs["spatial:dimensions"] == ["y", "x"]
    assert attrs["spatial:transform"] == list(GRID.transform)[:6]
    assert attrs["spatial:shape"] == list(GRID.shape) and attrs["spatial:bbox"] == list(GRID.bounds)
    full = xr.open_zarr(store)
    assert full.rio.crs.to_epsg() == 3338 and full.rio.transform() == GRID.transform  # CF as before
    levels = attrs["multiscales"]["layout"]
    assert len(levels) >= 2
    for level in levels:
        f = int(level["transform"]["scale"][0])
        assert level["transform"]["scale"] == [f, f]
        assert set(zarr.open_group(store, mode="r", path=level["asset"]).array_keys()) >= {
            lyr.name for lyr in LAYERS}
        ov = xr.open_zarr(store, group=level["asset"])
        for layer in LAYERS:
            np.testing.assert_array_equal(ov[layer.name].values, full[layer.name].values[..., ::f, ::f])
            assert ov[layer.name].attrs["spatial:dimensions"] == ["y", "x"]
        assert level["spatial:shape"] == list(ov.permafrost_probability.shape)
        a, _, c, _, e, g = level["spatial:transform"]
        np.testing.assert_allclose(ov.x.values, c + a * (np.arange(ov.sizes["x"]) + 0.5))
        np.testing.assert_allclose(ov.y.values, g + e * (np.arange(ov.sizes["y"]) + 0.5))
        assert ov.rio.crs.to_epsg() == 3338 and ov.rio.transform() == full.rio.transform() * Affine.scale(f)
        argmax = np.argmax(np.nan_to_num(ov.soil_order_probability.values, nan=-1), axis=0)
        valid = np.isfinite(ov.soil_order_class.values)
        assert valid.any() and np.array_equal(ov.soil_order_class.values[valid], argmax[valid])
    if zarr_format == 3:
        root = json.loads((store / "zarr.json").read_text())
        assert convention_errors(root, ("multiscales", "geo-proj", "spatial")) == []
        for level in levels:
            level_doc = json.loads((store / level["asset"] / "zarr.json").read_text())
            assert convention_errors(level_doc, ("geo-proj", "spatial")) == []
            for layer in LAYERS:
                arr = json.loads((store / level["asset"] / layer.name / "zarr.json").read_text())
                assert convention_errors(arr, ("geo-proj", "spatial")) == []
        broken = json.loads(json.dumps(root))
        broken["attributes"]["spatial:transform"] = [1.0, 2.0]
        broken["attributes"]["multiscales"]["layout"][0]["asset"] = "../outside"
        assert len(convention_errors(broken, ("multiscales", "spatial"))) == 2


def _doc_snippets() -> dict[str, str]:
    """The `<!-- snippet: NAME -->` python blocks of docs/outputs.md."""
    import re

    text = (ROOT / "docs" / "outputs.md").read_text()
    return dict(re.findall(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)```", text, flags=re.DOTALL))


def test_docs_client_snippets_run(workdir):
    """docs/outputs.md's client snippets, run as written: xarray and rioxarray decode, odc-stac codes
    scaled by the item's raster:bands and stackstac's rescale all give the COG's probabilities."""
    import rasterio

    out = workdir / "maps" / "v3"
    snippets = _doc_snippets()
    assert set(snippets) == {"xarray", "rioxarray-cog", "odc-stac", "stackstac"}
    with rasterio.open(out / "cogs" / "permafrost_probability.tif") as src:
        codes = src.read(1)
    expected = np.where(codes == 255, np.nan, codes * 0.01)
    assert np.isnan(expected).any() and np.nanmax(expected) <= 1
    scope: dict = {"ITEM": str(_item_path(out)), "MAP": str(out)}
    for name, code in snippets.items():
        exec(compile(code, f"docs/outputs.md:{name}", "exec"), scope)  # noqa: S102 - our own docs
    np.testing.assert_allclose(scope["prob"].values, expected, rtol=1e-6)
    np.testing.assert_allclose(scope["cog"].values[0], expected, rtol=1e-6)
    np.testing.assert_allclose(scope["prob_odc"].values[0], expected, rtol=1e-6)
    np.testing.assert_allclose(scope["prob_stackstac"].values[0, 0], expected, rtol=1e-6)
    assert scope["crs"].to_epsg() == 3338 and scope["overview"].sizes["y"] == -(-GRID.height // 4)
