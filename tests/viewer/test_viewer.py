"""The map viewer in a real browser (Debian's Chromium driven by Playwright) on the tiny demo map,
served by `misomap view` and from S3; and the server's answers to bad input."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio

from misomap.core.classes import PERMAFROST_CLASSES, SOIL_ORDERS
from misomap.core.inputs import INPUT_CLASSES
from misomap.config import config_from_dict

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MISOMAP = str(Path(sys.executable).parent / "misomap")
LAYER_NAMES = ("permafrost_probability", "permafrost_class", "soil_order_class", "soil_order_probability",
               "soil_order_entropy", "permafrost_entropy", "inputs_used")


@pytest.fixture(scope="module")
def demo_run(demo_world: Path, demo_stac_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo world mapped by a small RF: cube, training table and folds, map with its viewer."""
    from misomap.jobs.build_cube import run_build_cube
    from misomap.demo.run_sections import cube_section
    from misomap.jobs.predict import run_predict, with_map
    from misomap.jobs.train_rf import train_rf

    out = tmp_path_factory.mktemp("viewer-run")
    cfg = config_from_dict({
        "workdir": str(out), "stac": {"url": demo_stac_api},
        "cube": cube_section(demo_world, str(out / "cube.zarr"), chunk=128),
        "labels": {"world": str(demo_world)}, "rf": {"n_estimators": 10},
        "folds": {"k": 3, "dbscan_eps_m": [250.0], "block_size_m": 1500.0, "regions": False, "zones": False}})
    run_build_cube(cfg)
    train_rf(cfg)
    run_predict(with_map(cfg, "rf", str(out / "models" / "rf")))
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: install Debian's chromium (.ci/browser.sh)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    pg = browser.new_page(viewport={"width": 1200, "height": 800})
    pg.errors = []
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    yield pg
    pg.close()


def serve(path: Path, port: int) -> tuple[subprocess.Popen, list[str]]:
    """`misomap view PATH --port PORT` in a subprocess; the process and its printed viewer URLs."""
    proc = subprocess.Popen([MISOMAP, "view", str(path), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("viewer: "), (first, proc.stderr.read() if proc.poll() is not None else "")
    urls = [first.split()[-1]]
    while len(urls) < _expected_urls(path):
        urls.append(proc.stdout.readline().split()[-1])
    return proc, urls


def _expected_urls(path: Path) -> int:
    n = sum(1 for _ in path.glob("maps/*/viewer/index.html")) or 1
    return n + (1 if n >= 2 else 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_rendered(page, timeout_ms: int = 60000) -> None:
    page.wait_for_function("document.body.dataset.rendered === 'true'", timeout=timeout_ms)


def map_screenshot(page) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB"))


def assert_not_blank(img: np.ndarray) -> None:
    background = np.array([0xF4, 0xF4, 0xF4])
    drawn = np.any(np.abs(img.astype(int) - background) > 8, axis=-1)
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert drawn.mean() > 0.4, f"only {drawn.mean():.0%} of the map area is drawn"
    assert colours > 20, f"{colours} distinct colours: the raster did not render"


def cog_values(cogs: Path, row: int, col: int) -> dict[tuple[str, str | None], int]:
    """Every layer's (and class band's) raw value at one pixel, read with rasterio."""
    out = {}
    for name in LAYER_NAMES:
        path = cogs / f"{name}.tif"
        if not path.exists():
            continue
        with rasterio.open(path) as src:
            vals = src.read(window=((row, row + 1), (col, col + 1)))[:, 0, 0]
        if name == "soil_order_probability":
            out |= {(name, band): int(v) for band, v in zip(SOIL_ORDERS, vals, strict=True)}
        else:
            out[(name, None)] = int(vals[0])
    return out


def pick_pixel(cogs: Path) -> tuple[int, int, float, float]:
    """A valid pixel away from the edges: (row, col, x, y) with x/y its centre in EPSG:3338."""
    with rasterio.open(cogs / "permafrost_probability.tif") as src:
        band = src.read(1)
        rows, cols = np.nonzero(band != 255)
        inner = (rows > 20) & (rows < src.height - 20) & (cols > 20) & (cols < src.width - 20)
        row, col = int(rows[inner][len(rows[inner]) // 3]), int(cols[inner][len(cols[inner]) // 3])
        x, y = src.xy(row, col)
    return row, col, x, y


def click_coordinate(page, x: float, y: float) -> None:
    px, py = page.evaluate(f"window.misomapViewer.olMap.getPixelFromCoordinate([{x}, {y}])")
    box = page.locator("#map").bounding_box()
    page.evaluate("document.getElementById('values').dataset.ready = ''")
    page.mouse.click(box["x"] + px, box["y"] + py)
    page.wait_for_function("document.getElementById('values').dataset.ready", timeout=20000)


def page_values(page, role: str) -> dict[tuple[str, str | None], tuple[str, str]]:
    """(layer, band) -> (raw value, shown text) for one map's column of the values table."""
    cells = page.eval_on_selector_all(
        f"#values td[data-map='{role}']",
        "tds => tds.map(td => [td.dataset.layer, td.dataset.band || null, td.dataset.raw, td.textContent])")
    return {(layer, band): (raw, text) for layer, band, raw, text in cells}


def assert_values_match(shown: dict, expected: dict) -> None:
    assert set(shown) == set(expected), (sorted(shown), sorted(expected))
    for key, value in expected.items():
        raw, text = shown[key]
        assert int(raw) == value, (key, raw, value)
        if key[0] == "soil_order_class":
            assert text == SOIL_ORDERS[value]
        elif key[0] == "permafrost_class":
            assert text == PERMAFROST_CLASSES[value]
        elif key[0] == "inputs_used":
            assert text == INPUT_CLASSES[value]
        else:
            assert text == f"{value} %"


def invert_probability(cog: Path, tmp: Path) -> None:
    """Rewrite a probability COG as 100 - p (nodata kept), still a COG with fresh overviews."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    with rasterio.open(cog) as src:
        profile, band = src.profile, src.read(1)
    staging = tmp / "staging.tif"
    with rasterio.open(staging, "w", **profile) as dst:
        dst.write(np.where(band == 255, band, 100 - band), 1)
    cog_translate(staging, cog, cog_profiles.get("deflate"), nodata=255, quiet=True,
                  overview_resampling="average")


def set_range(page, selector: str, value: int) -> None:
    page.fill(selector, str(value))
    page.dispatch_event(selector, "input")
    page.wait_for_timeout(200)
    page.evaluate("window.misomapViewer.olMap.renderSync()")


def single_map_shots(page, url: str, layer: str, opacities: tuple[int, ...]) -> dict[int, np.ndarray]:
    page.goto(url)
    wait_rendered(page)
    page.check(f"#layer-{layer}")
    wait_rendered(page)
    shots = {}
    for opacity in opacities:
        set_range(page, "#opacity", opacity)
        shots[opacity] = map_screenshot(page)
    return shots


def assert_swipe_draws_true_colours(page, urls: list[str]) -> None:
    """Compare mode draws, pixel for pixel, the main map alone left of the swipe line and the compare
    map alone right of it, at every opacity and after the line moved (maps a and b differ)."""
    layer, opacities = "permafrost_probability", (85, 40)
    alone = [single_map_shots(page, url, layer, opacities) for url in urls[:2]]
    assert np.any(alone[0][85] != alone[1][85], axis=-1).mean() > 0.2, "the two maps must differ"
    page.goto(urls[2])
    wait_rendered(page)
    page.check(f"#layer-{layer}")
    wait_rendered(page)
    for swipe in (50, 30, 70):
        set_range(page, "#swipe", swipe)
        for opacity in opacities:
            set_range(page, "#opacity", opacity)
            shot = map_screenshot(page)
            cut = round(shot.shape[1] * swipe / 100)
            left, right = slice(0, cut - 3), slice(cut + 3, None)  # the 2 px swipe line between them
            for side, reference in ((left, alone[0][opacity]), (right, alone[1][opacity])):
                diff = np.abs(shot[:, side].astype(int) - reference[:, side].astype(int)).max(axis=-1)
                assert diff.max() <= 1, (f"swipe {swipe} %, opacity {opacity} %: {np.mean(diff > 1):.1%} of "
                                         f"pixels differ from the map alone (max {diff.max()})")


def test_viewer_on_the_demo_map(demo_run, page, tmp_path):
    """Served by `misomap view`: renders, values at a clicked pixel equal the COGs', pedons carry
    their folds, and a second map (one COG missing) swipes beside it with that layer reported."""
    maps = tmp_path / "maps"
    shutil.copytree(demo_run / "maps" / "rf", maps / "a")
    shutil.copytree(demo_run / "maps" / "rf", maps / "b")
    invert_probability(maps / "b" / "cogs" / "permafrost_probability.tif", tmp_path)  # a different map
    (maps / "b" / "cogs" / "soil_order_entropy.tif").unlink()
    proc, urls = serve(tmp_path, _free_port())
    try:
        single, compare = urls[0], urls[2]
        t0 = time.perf_counter()
        page.goto(single)
        wait_rendered(page)
        seconds = time.perf_counter() - t0
        page_ms = page.evaluate("window.misomapViewer.firstRenderMs")
        print(f"first render {seconds:.2f} s (page: {page_ms:.0f} ms)")
        assert page.evaluate("window.misomapViewer.errors") == []
        assert_not_blank(map_screenshot(page))
        assert page.locator(".ol-scale-bar").count() == 1
        legend = page.inner_text("#legend")
        assert "probability of near-surface permafrost" in legend and "no data (value 255)" in legend
        assert not page.is_checked("#pedons"), "training pedons are hidden until asked for"
        page.check("#layer-soil_order_class")
        wait_rendered(page)
        assert all(name in page.inner_text("#legend") for name in SOIL_ORDERS)

        row, col, x, y = pick_pixel(maps / "a" / "cogs")
        click_coordinate(page, x, y)
        assert_values_match(page_values(page, "main"), cog_values(maps / "a" / "cogs", row, col))
        assert "EPSG:3338" in page.inner_text("#click-coords") and "°" in page.inner_text("#click-coords")

        geojson = json.loads((maps / "a" / "viewer" / "pedons.geojson").read_text())
        props = geojson["features"][0]["properties"]
        assert set(props["folds"]) == {"random", "dbscan_250m", "blocks"}
        assert props["soil_order"] in SOIL_ORDERS + (None,)
        assert page.locator("#scheme option").count() == 3

        page.goto(compare)
        wait_rendered(page)
        errors = page.evaluate("window.misomapViewer.errors")
        assert len(errors) == 1 and "soil_order_entropy" in errors[0] and "HTTP 404" in errors[0], errors
        assert "soil_order_entropy" in page.inner_text("#errors")
        assert_not_blank(map_screenshot(page))
        click_coordinate(page, x, y)
        assert_values_match(page_values(page, "main"), cog_values(maps / "a" / "cogs", row, col))
        assert_values_match({k: v for k, v in page_values(page, "compare").items() if v[0] is not None},
                            cog_values(maps / "b" / "cogs", row, col))
        assert page_values(page, "compare")[("soil_order_entropy", None)][1] == "failed"
        shots = []
        for swipe in ("100", "0"):  # all main map, then all compare map
            page.fill("#swipe", swipe)
            page.dispatch_event("#swipe", "input")
            page.wait_for_timeout(300)
            page.evaluate("window.misomapViewer.olMap.renderSync()")
            shots.append(map_screenshot(page))
        changed = np.any(shots[0] != shots[1], axis=-1).mean()
        assert changed > 0.2, f"swiping changed only {changed:.0%} of the map"
        assert page.errors == []
        assert_swipe_draws_true_colours(page, urls)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_viewer_from_s3(demo_run, s3_server, s3fs_filesystem, s3_bucket, page, monkeypatch):
    """The same page from object storage: anonymous read through a bucket policy, range requests."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    from misomap.jobs.predict import with_map
    from misomap.mapping.chunk import output_grid
    from misomap.viewer.publish import training_pedons, write_viewer

    fs = s3fs_filesystem
    prefix = f"{s3_bucket}/maps/rf"
    for cog in sorted((demo_run / "maps" / "rf" / "cogs").glob("*.tif")):
        fs.put_file(str(cog), f"{prefix}/cogs/{cog.name}")
    cfg = config_from_dict({"workdir": str(demo_run), "storage": {
        "endpoint_url": s3_server.endpoint_url}, "labels": {"cube": str(demo_run / "cube.zarr")}})
    cfg = with_map(cfg, "rf", str(demo_run / "models" / "rf"))
    cfg = cfg.model_copy(update={"map": cfg.map.model_copy(update={"output": f"s3://{prefix}"})})
    url = write_viewer(cfg.map, cfg.storage, cfg.name, output_grid(cfg.map, cfg.storage),
                       training_pedons(cfg.workdir, cfg.storage))
    assert url == f"s3://{prefix}/viewer/index.html"
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{s3_bucket}/*"]}]}
    fs.call_s3("put_bucket_policy", Bucket=s3_bucket, Policy=json.dumps(policy))
    http = f"{s3_server.endpoint_url}/{prefix}"
    with urllib.request.urlopen(f"{http}/viewer/index.html") as resp:  # noqa: S310 - loopback
        assert resp.headers["Content-Type"] == "text/html"

    page.goto(f"{http}/viewer/index.html")
    wait_rendered(page)
    assert page.evaluate("window.misomapViewer.errors") == []
    assert_not_blank(map_screenshot(page))
    cogs = demo_run / "maps" / "rf" / "cogs"
    row, col, x, y = pick_pixel(cogs)
    click_coordinate(page, x, y)
    assert_values_match(page_values(page, "main"), cog_values(cogs, row, col))
    assert page.errors == []


def test_view_refuses_a_folder_without_a_map(tmp_path):
    (tmp_path / "map.zarr").mkdir()
    res = subprocess.run([MISOMAP, "view", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert f"{tmp_path}: no map here" in res.stderr and "rerun `misomap predict`" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_view_takes_another_port_when_busy_and_serves_ranges(demo_run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.Popen([MISOMAP, "view", str(demo_run / "maps" / "rf"), "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = proc.stdout.readline().split()[-1]
            assert f":{port}/" not in url and url.endswith("/viewer/")
            cog = url.replace("/viewer/", "/cogs/permafrost_probability.tif")
            data = (demo_run / "maps" / "rf" / "cogs" / "permafrost_probability.tif").read_bytes()
            req = urllib.request.Request(cog, headers={"Range": "bytes=100-199"})
            with urllib.request.urlopen(req) as resp:  # noqa: S310 - loopback
                assert resp.status == 206 and resp.read() == data[100:200]
                assert resp.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
            req = urllib.request.Request(cog, headers={"Range": f"bytes={len(data)}-"})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req)  # noqa: S310 - loopback
            assert err.value.code == 416
        finally:
            proc.terminate()
            stderr = proc.communicate(timeout=10)[1]
    assert f"port {port} is in use; serving on port" in stderr


def test_view_serves_only_files_inside_its_folder(tmp_path):
    """A symlink (file or folder) leading out of the served folder, `..` and encoded `..` are 404;
    folders are never listed; files inside, symlinked ones included, are served."""
    import threading

    from misomap.viewer.server import make_server

    served, outside = tmp_path / "served", tmp_path / "outside"
    (served / "viewer").mkdir(parents=True)
    (served / "cogs").mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (served / "viewer" / "index.html").write_text("<html>map</html>")
    (served / "cogs" / "a.tif").write_bytes(b"tiff bytes")
    (served / "link-out.txt").symlink_to(outside / "secret.txt")
    (served / "passwd").symlink_to("/etc/passwd")
    (served / "dir-out").symlink_to(outside, target_is_directory=True)
    (served / "link-in.tif").symlink_to(served / "cogs" / "a.tif")
    server = make_server(served, _free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def status(path: str, **headers: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers)) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, b""

    try:
        assert status("/viewer/") == (200, b"<html>map</html>")
        assert status("/cogs/a.tif") == (200, b"tiff bytes")
        assert status("/link-in.tif", Range="bytes=0-3") == (206, b"tiff")
        for path in ("/link-out.txt", "/passwd", "/dir-out/secret.txt", "/../outside/secret.txt",
                     "/%2e%2e/outside/secret.txt", "/cogs/", "/", "/dir-out/"):
            for headers in ({}, {"Range": "bytes=0-3"}):
                code, body = status(path, **headers)
                assert code == 404 and b"secret" not in body and b"root:" not in body, (path, headers, code)
    finally:
        server.shutdown()
        server.server_close()


def test_nodata_colour_stands_apart_from_every_class_and_ramp_colour():
    """In every layer's legend nodata has its own colour, far (RGB distance > 120) from each class
    colour, each pedon colour and every shade of the probability and entropy ramps."""
    from misomap.cube.grid import Grid
    from misomap.viewer.publish import manifest

    doc = manifest(Grid("EPSG:3338", 30.0, 0.0, 0.0, 300.0, 300.0), "t", "rf")

    def rgb(hex_colour: str) -> np.ndarray:
        return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], float)

    pedon_colours = [rgb(c) for by in doc["pedons"]["colours"].values() for c in by.values()]
    for layer in doc["layers"]:
        nodata = rgb(layer["nodata_colour"])
        if layer["kind"] == "class":
            others = [rgb(c["colour"]) for c in layer["classes"]]
        else:
            stops = np.array([v for v, _ in layer["ramp"]], float)
            colours = np.array([c for _, c in layer["ramp"]], float)
            others = [np.array([np.interp(p, stops, colours[:, k]) for k in range(3)]) for p in range(101)]
        distances = [np.linalg.norm(nodata - c) for c in others + pedon_colours]
        assert min(distances) > 120, (layer["name"], min(distances))
