"""Smoke tests that use each real service for real."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from misomap.core.errors import ServiceError
from misomap.services.process import ManagedProcess


def test_s3_zarr_v3_roundtrip_exact(s3_server, s3fs_filesystem, s3_bucket):
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"v": (("y", "x"), rng.normal(size=(64, 48)).astype("float32"))},
        coords={"y": np.arange(64) * -30.0, "x": np.arange(48) * 30.0},
    )
    url = f"s3://{s3_bucket}/smoke.zarr"
    ds.to_zarr(url, zarr_format=3, storage_options=s3_server.storage_options(), mode="w")
    back = xr.open_zarr(url, storage_options=s3_server.storage_options()).load()
    xr.testing.assert_identical(ds, back)
    assert s3fs_filesystem.exists(f"{s3_bucket}/smoke.zarr/zarr.json")


def test_s3_wrong_key_refused(s3_server, s3_bucket):
    import s3fs

    bad = s3fs.S3FileSystem(key=s3_server.access_key, secret="wrong-secret",
                            client_kwargs={"endpoint_url": s3_server.endpoint_url})
    with pytest.raises(PermissionError):
        bad.ls(s3_bucket)
    anon = s3fs.S3FileSystem(anon=True, client_kwargs={"endpoint_url": s3_server.endpoint_url})
    with pytest.raises(PermissionError):
        anon.ls(s3_bucket)


def _write_catalog(folder: Path, n_items: int) -> list[Path]:
    collection = {
        "type": "Collection", "stac_version": "1.1.0", "id": "smoke", "description": "smoke test",
        "license": "CC-BY-4.0", "links": [],
        "extent": {"spatial": {"bbox": [[-150.0, 60.0, -140.0, 70.0]]},
                   "temporal": {"interval": [["2020-01-01T00:00:00Z", "2020-12-31T00:00:00Z"]]}},
    }
    t0 = datetime(2020, 6, 1, tzinfo=timezone.utc)
    items = []
    for i in range(n_items):
        lon = -150.0 + (i % 10)
        geom = {"type": "Polygon", "coordinates": [[[lon, 64], [lon + 1, 64], [lon + 1, 65], [lon, 65], [lon, 64]]]}
        items.append({
            "type": "Feature", "stac_version": "1.1.0", "id": f"item-{i:03d}", "collection": "smoke",
            "geometry": geom, "bbox": [lon, 64, lon + 1, 65], "links": [],
            "properties": {"datetime": (t0 + timedelta(days=i)).isoformat().replace("+00:00", "Z")},
            "assets": {"data": {"href": f"file:///nowhere/{i}.tif", "type": "image/tiff"}},
        })
    (folder / "collection.json").write_text(json.dumps(collection))
    (folder / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return [folder / "collection.json", folder / "items.json"]


def test_stac_api_search_bbox_datetime_collection_paged(stac_api_factory, tmp_path):
    from pystac_client import Client

    url = stac_api_factory(_write_catalog(tmp_path, 40))
    client = Client.open(url)
    # items 0..39: lon = -150 + i%10, day = June 1 + i. bbox [-147.5, ...] keeps lon >= -148 (i%10 >= 2 ... overlapping)
    search = client.search(collections=["smoke"], bbox=[-145.5, 64.2, -140.0, 64.8],
                           datetime="2020-06-05/2020-07-05", limit=3)
    pages = list(search.pages())
    ids = sorted(it.id for page in pages for it in page.items)
    expected = sorted(f"item-{i:03d}" for i in range(40)
                      if (-150 + i % 10) + 1 >= -145.5 and 4 <= i <= 34)
    assert ids == expected
    assert len(pages) >= 3, "paging must have been exercised"
    assert list(client.search(collections=["nope"], max_items=5).items()) == []


def test_dask_gateway_cluster_two_workers(gateway_server):
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    gateway = Gateway(gateway_server.address, auth=BasicAuth("tester", gateway_server.password))
    cluster = gateway.new_cluster()
    try:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)
        assert len(client.scheduler_info()["workers"]) == 2
        futures = client.map(lambda x: x * x, range(20))
        assert sum(client.gather(futures)) == sum(x * x for x in range(20))
        client.close()
    finally:
        cluster.shutdown()
    assert gateway.list_clusters() == []
    gateway.close()


def test_gateway_wrong_password_refused(gateway_server):
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    gateway = Gateway(gateway_server.address, auth=BasicAuth("tester", "wrong"))
    try:
        with pytest.raises(Exception, match="(?i)unauthori|403|401"):
            gateway.list_clusters()
    finally:
        gateway.close()


def test_service_that_cannot_start_fails_with_its_log(tmp_path):
    proc = ManagedProcess("broken", ["sh", "-c", "echo boom-diagnostic; exit 3"], tmp_path / "b.log")
    with pytest.raises(ServiceError, match="boom-diagnostic"):
        proc.start(lambda: False, timeout=5)
