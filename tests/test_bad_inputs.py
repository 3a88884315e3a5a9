"""Every bad input a clumsy user or operator gives, run through the command-line program.

Each case asserts exit code 2, exactly one error line naming the culprit (no traceback, no secret),
and that no input - world, cube, model, config, a foreign folder - changed by a single byte.
Cases run in-process through `run_cli` (the console script's entry point); a few also as real
processes (`test_real_process`).
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
import zarr

from tests.support import ROOT
from tests.support.cli import run_in_process
from tests.support.cube_fixtures import cube_section, write_source_world

SECRET = "hunter2-not-for-logs"


@dataclass
class Env:
    """The session's inputs: a source world behind a real STAC API, a finished cube, model files."""

    root: Path
    world: Path
    stac_url: str
    cube: Path
    unfinished_cube: Path
    rf_dir: Path
    html_url: str

    def inputs(self) -> list[Path]:
        return [self.world, self.cube, self.unfinished_cube, self.rf_dir]


def snapshot(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under `paths` (and of each path itself when it is a file)."""
    out = {}
    for base in paths:
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


class _Html(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Sign in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def env(tmp_path_factory, stac_api_factory) -> Iterator[Env]:
    from misomap.config import config_from_dict
    from misomap.jobs.build_cube import run_build_cube

    root = tmp_path_factory.mktemp("bad-inputs")
    world = write_source_world(root / "world")
    stac_url = stac_api_factory(world.stac_files)
    cube = root / "cube.zarr"
    run_build_cube(config_from_dict({"stac": {"url": stac_url, "max_retries": 0},
                                     "cube": cube_section(str(cube))}))
    unfinished = root / "unfinished.zarr"
    shutil.copytree(cube, unfinished)
    shutil.copytree(root / "cube.zarr.progress", root / "unfinished.zarr.progress")
    group = zarr.open_group(str(unfinished), mode="r+")
    del group.attrs["misomap_complete"]
    zarr.consolidate_metadata(str(unfinished))
    rf_dir = root / "rf-model"
    rf_dir.mkdir()
    (rf_dir / "permafrost.skops").write_bytes(b"PK\x03\x04 truncated")
    (rf_dir / "soil_order.skops").write_bytes(b"PK\x03\x04 truncated")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Env(root, world.root, stac_url, cube, unfinished, rf_dir,
                  f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()


@dataclass
class Case:
    """A bad input: the command (with {cfg} for the written config), what the message must name."""

    name: str
    args: list[str]
    culprit: str | Callable[[Env], str]
    config: dict | Callable[[Env, Path], dict] | bytes | None = None
    setup: Callable[[Env, Path], list[Path]] | None = None
    """Makes extra inputs in the case's folder; returns paths that must stay unchanged."""
    env_vars: dict[str, str] = field(default_factory=dict)


def _cube(e: Env, tmp: Path, **over) -> dict:
    out = over.pop("out", str(tmp / "out.zarr"))
    return {"stac": {"url": e.stac_url, "max_retries": 0}, "cube": cube_section(out, **over)}


def _map(e: Env, tmp: Path, **over) -> dict:
    section = {"cube": str(e.cube), "output": str(tmp / "map"), "model": "tests.support.map_test_predictor:factory",
               "chunk_px": 32, "workers": 1, **over}
    return {"map": section}


def _foreign(e: Env, tmp: Path) -> list[Path]:
    folder = tmp / "foreign"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "data").mkdir()
    (folder / "data" / "field.csv").write_text("a,b\n1,2\n")
    return [folder]


def _a_file(e: Env, tmp: Path) -> list[Path]:
    (tmp / "notes.txt").write_text("not a store")
    return [tmp / "notes.txt"]


def _other_map(e: Env, tmp: Path) -> list[Path]:
    store = tmp / "othermap"
    (store / "map.zarr").mkdir(parents=True)
    zarr.open_group(str(store / "map.zarr"), mode="w").attrs["title"] = "someone else's map"
    return [store]


def _miso_truncated(e: Env, tmp: Path) -> list[Path]:
    (tmp / "miso").mkdir()
    (tmp / "miso" / "miso.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    return [tmp / "miso"]


def _damaged_cube(how: str) -> Callable[[Env, Path], list[Path]]:
    """A copy of the finished cube (records and chunk manifest too) with two chunk files swapped or
    one byte of a chunk flipped: still decodes, wrong values."""
    def make(e: Env, tmp: Path) -> list[Path]:
        cube = tmp / "damaged.zarr"
        shutil.copytree(e.cube, cube)
        shutil.copytree(f"{e.cube}.progress", f"{cube}.progress")
        shutil.copy(f"{e.cube}.chunks.json", f"{cube}.chunks.json")
        files = sorted((p for p in (cube / "data" / "c").rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size)
        a, b = files[0], files[1]
        if how == "swap":
            da, db = a.read_bytes(), b.read_bytes()
            a.write_bytes(db)
            b.write_bytes(da)
        else:
            raw = bytearray(a.read_bytes())
            raw[len(raw) // 2] ^= 0x01
            a.write_bytes(bytes(raw))
        return []
    return make


def _regen(e: Env, tmp: Path) -> dict:
    return {"workdir": str(tmp / "work"), "stac": {"url": e.stac_url, "max_retries": 0},
            "cube": cube_section(str(tmp / "ignored.zarr")),
            "map": {"cube": "ignored-cube", "output": "ignored-out", "model": "tests.support.fault_predictor:factory",
                    "chunk_px": 32, "workers": 1, "cogs": False},
            "publish": {"root": str(tmp / "pub"), "keep": 1}}


def _pointer(body: bytes) -> Callable[[Env, Path], list[Path]]:
    def make(e: Env, tmp: Path) -> list[Path]:
        (tmp / "pub").mkdir()
        (tmp / "pub" / "latest.json").write_bytes(body)
        return [tmp / "pub"]
    return make


CFG = ["config-check", "-c", "{cfg}"]
BUILD = ["cube", "build", "-c", "{cfg}"]
PREDICT = ["predict", "-c", "{cfg}"]

CASES: list[Case] = [
    # --- the configuration, caught by config-check before any work
    Case("resolution zero", CFG, "cube.resolution", lambda e, t: _cube(e, t, resolution=0)),
    Case("resolution negative", CFG, "cube.resolution", lambda e, t: _cube(e, t, resolution=-10)),
    Case("inverted bounds", CFG, "not ordered",
         lambda e, t: _cube(e, t, bounds=[200960.0, 1639360.0, 200000.0, 1640000.0])),
    Case("bounds outside the CRS domain", CFG, "outside the domain of EPSG:3338",
         lambda e, t: _cube(e, t, bounds=[1e7, 1e7, 1e7 + 960, 1e7 + 640])),
    Case("bounds of infinite size", CFG, "outside the domain",
         lambda e, t: _cube(e, t, bounds=[1e9, 1e9, 1e9 + 960, 1e9 + 640])),
    Case("bounds smaller than a pixel", CFG, "smaller than one",
         lambda e, t: _cube(e, t, bounds=[200000.0, 1639995.0, 200005.0, 1640000.0])),
    Case("latitude over 90", CFG, "cube.bbox",
         lambda e, t: {**_cube(e, t), "cube": {**_cube(e, t)["cube"], "bounds": None,
                                                "bbox": [-150, 64, -149, 95]}}),
    Case("bbox west east swapped", CFG, "cube.bbox",
         lambda e, t: {**_cube(e, t), "cube": {**_cube(e, t)["cube"], "bounds": None,
                                                "bbox": [-149, 64, -150, 65]}}),
    Case("nonsense CRS", CFG, "cube.crs", lambda e, t: _cube(e, t, crs="EPSG:999999")),
    Case("geographic CRS", CFG, "not projected", lambda e, t: _cube(e, t, crs="EPSG:4326")),
    Case("nonsense datetime", CFG, "cube.datetime", lambda e, t: _cube(e, t, datetime="yesterday/today")),
    Case("datetime without range", CFG, "cube.datetime", lambda e, t: _cube(e, t, datetime="2021-06-01")),
    Case("datetime reversed", CFG, "ends before it starts",
         lambda e, t: _cube(e, t, datetime="2022-01-01/2021-01-01")),
    Case("zstd level 99", CFG, "cube.zstd_level", lambda e, t: _cube(e, t, zstd_level=99)),
    Case("cube workers 0", CFG, "cube.workers", lambda e, t: _cube(e, t, workers=0)),
    Case("chunk too small", CFG, "chunk must be at least 16", lambda e, t: _cube(e, t, chunk=8)),
    Case("season ends before start", CFG, "season end",
         lambda e, t: _cube(e, t, seasons={"summer": {"start": "08-15", "end": "06-15"}})),
    Case("sign not module:function", CFG, "sign must be", lambda e, t: _cube(e, t, sign="planetary_computer")),
    Case("quicklook band unknown", CFG, "quicklook_bands",
         lambda e, t: _cube(e, t, quicklook_bands=["nope", "s2_summer_red", "s2_summer_blue"])),
    Case("negative STAC timeout", CFG, "stac.timeout_s", {"stac": {"url": "http://127.0.0.1:9", "timeout_s": -1}}),
    Case("negative STAC retries", CFG, "stac.max_retries", {"stac": {"max_retries": -1}}),
    Case("gateway workers 0", CFG, "gateway.workers", {"gateway": {"workers": 0}}),
    Case("map workers 0", CFG, "map.workers", lambda e, t: _map(e, t, workers=0)),
    Case("map output equals map cube", CFG, "overlaps map.cube", lambda e, t: _map(e, t, output=str(e.cube))),
    Case("map output inside the cube", CFG, "overlaps map.cube",
         lambda e, t: _map(e, t, output=str(e.cube / "maps"))),
    Case("map output holds the model", CFG, "overlaps map.model_path",
         lambda e, t: _map(e, t, model_path=str(t / "map" / "model.bin"))),
    Case("cube out inside the demo world", CFG, "overlaps demo_world.out",
         lambda e, t: {**_cube(e, t), "demo_world": {"out": str(t / "w")},
                       "cube": cube_section(str(t / "w" / "cube.zarr"))}),
    Case("missing map.cube", PREDICT, "map.cube", {"map": {"output": "somewhere"}}),
    Case("unknown key", CFG, "stac.colections", {"stac": {"colections": ["x"]}}),
    Case("secret in the config", CFG, "environment", {"storage": {"secret": SECRET}}),
    Case("credentials in a URL", CFG, "stac.url", {"stac": {"url": f"http://user:{SECRET}@stac.example/x"}}),
    Case("not UTF-8", CFG, "not UTF-8", b"name: caf\xe9\n"),
    Case("not YAML", CFG, "not valid YAML", b"stac: [unclosed\n"),
    Case("YAML list", CFG, "must be a mapping", b"- a\n- b\n"),
    Case("config file missing", ["config-check", "-c", "{tmp}/absent.yaml"], "absent.yaml"),
    # --- cube build: ownership before any write, endpoints
    Case("cube out is a foreign folder", BUILD, lambda e: "foreign",
         lambda e, t: _cube(e, t, out=str(t / "foreign")), setup=_foreign),
    Case("cube out is the input world", BUILD, lambda e: str(e.world),
         lambda e, t: _cube(e, t, out=str(e.world))),
    Case("cube out is another run's map", BUILD, "othermap",
         lambda e, t: _cube(e, t, out=str(t / "othermap")), setup=_other_map),
    Case("cube out is a file", BUILD, "notes.txt", lambda e, t: _cube(e, t, out=str(t / "notes.txt")),
         setup=_a_file),
    Case("cube out is another cube", BUILD, lambda e: str(e.cube),
         lambda e, t: _cube(e, t, out=str(e.cube), datetime="2021-06-01/2021-09-30")),
    Case("no cube section", BUILD, "cube", {"stac": {"url": "http://127.0.0.1:9"}}),
    Case("no STAC url", BUILD, "stac.url", lambda e, t: {"cube": cube_section(str(t / "out.zarr"))}),
    Case("STAC endpoint down", BUILD, "http://127.0.0.1:9",
         lambda e, t: {**_cube(e, t), "stac": {"url": "http://127.0.0.1:9", "max_retries": 0}}),
    Case("STAC endpoint returns HTML", BUILD, lambda e: e.html_url,
         lambda e, t: {**_cube(e, t), "stac": {"url": e.html_url, "max_retries": 0}}),
    # --- predict: everything checked on the client before any task
    Case("no map section", PREDICT, "map:", {"name": "x"}),
    Case("cube missing", PREDICT, "no cube at", lambda e, t: _map(e, t, cube=str(t / "absent.zarr"))),
    Case("cube unfinished", PREDICT, lambda e: f"cube {e.unfinished_cube} is unfinished",
         lambda e, t: _map(e, t, cube=str(e.unfinished_cube))),
    Case("model lacks cube bands", PREDICT, "lacks bands", lambda e, t: _map(e, t)),
    Case("model factory not importable", PREDICT, "nosuch_module:factory",
         lambda e, t: _map(e, t, model="nosuch_module:factory")),
    Case("rf model_path is a file, not its folder", PREDICT, lambda e: str(e.rf_dir / "permafrost.skops"),
         lambda e, t: _map(e, t, model="rf", model_path=str(e.rf_dir / "permafrost.skops"))),
    Case("miso model_path is a directory", PREDICT, lambda e: str(e.rf_dir),
         lambda e, t: _map(e, t, model="miso", model_path=str(e.rf_dir))),
    Case("rf model truncated", PREDICT, "permafrost.skops",
         lambda e, t: _map(e, t, model="rf", model_path=str(e.rf_dir))),
    Case("miso model truncated", PREDICT, "miso",
         lambda e, t: _map(e, t, model="miso", model_path=str(t / "miso" / "miso.safetensors")),
         setup=_miso_truncated),
    Case("map output is a foreign folder", PREDICT, "foreign",
         lambda e, t: _map(e, t, output=str(t / "foreign")), setup=_foreign),
    Case("map output is a file", PREDICT, "notes.txt", lambda e, t: _map(e, t, output=str(t / "notes.txt")),
         setup=_a_file),
    Case("map output is another product's store", PREDICT, "othermap",
         lambda e, t: _map(e, t, output=str(t / "othermap")), setup=_other_map),
    Case("gateway password missing", PREDICT + ["--gateway", "http://127.0.0.1:9"], "MISOMAP_GATEWAY_PASSWORD",
         lambda e, t: _map(e, t, model="tests.support.fault_predictor:factory")),
    Case("gateway unreachable", PREDICT + ["--gateway", "http://127.0.0.1:9"], "http://127.0.0.1:9",
         lambda e, t: _map(e, t, model="tests.support.fault_predictor:factory"),
         env_vars={"MISOMAP_GATEWAY_PASSWORD": "pw-for-a-gateway-that-is-down"}),
    Case("verify a folder that is no store", ["verify", "{tmp}"], "is not a Zarr store"),
    # --- damaged inputs caught where they are read, numeric options out of range
    Case("predict on a cube with two chunks swapped", PREDICT, "chunk",
         lambda e, t: _map(e, t, cube=str(t / "damaged.zarr"), model="tests.support.fault_predictor:factory"),
         setup=_damaged_cube("swap")),
    Case("predict on a cube with a flipped byte", PREDICT, "chunk",
         lambda e, t: _map(e, t, cube=str(t / "damaged.zarr"), model="tests.support.fault_predictor:factory"),
         setup=_damaged_cube("flip")),
    Case("plan resolution negative", ["plan", "-c", "{cfg}", "--resolution", "-5"], "resolution",
         lambda e, t: _cube(e, t)),
    Case("plan resolution nan", ["plan", "-c", "{cfg}", "--resolution", "nan"], "resolution",
         lambda e, t: _cube(e, t)),
    Case("plan resolution zero", ["plan", "-c", "{cfg}", "--resolution", "0"], "resolution",
         lambda e, t: _cube(e, t)),
    Case("plan resolution 1e-6", ["plan", "-c", "{cfg}", "--resolution", "1e-6"], "resolution",
         lambda e, t: _cube(e, t)),
    Case("regenerate --statewide without --dry-run", ["regenerate", "-c", "{cfg}", "--statewide"], "--dry-run", _regen),
    Case("latest.json outside the publish root", ["regenerate", "-c", "{cfg}"], "latest.json", _regen,
         setup=_pointer(b'{"version": "../../other/versions/v00001-000000000000"}')),
    Case("latest.json garbage", ["regenerate", "-c", "{cfg}"], "latest.json", _regen, setup=_pointer(b"\x00{{garbage")),
    Case("latest.json empty", ["regenerate", "-c", "{cfg}"], "latest.json", _regen, setup=_pointer(b"")),
    Case("latest.json foreign", ["regenerate", "-c", "{cfg}"], "latest.json", _regen,
         setup=_pointer(b'{"type": "FeatureCollection", "features": []}')),
]


def _write_config(case: Case, e: Env, tmp: Path) -> Path | None:
    if case.config is None:
        return None
    path = tmp / "run.yaml"
    if isinstance(case.config, bytes):
        path.write_bytes(case.config)
    else:
        data = case.config(e, tmp) if callable(case.config) else case.config
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path




@pytest.fixture(autouse=True)
def _test_predictor_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("MISOMAP_GATEWAY_PASSWORD", raising=False)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, env: Env, tmp_path: Path, capsys, monkeypatch):
    extra = case.setup(env, tmp_path) if case.setup else []
    cfg = _write_config(case, env, tmp_path)
    watched = env.inputs() + extra + ([cfg] if cfg else [])
    before = snapshot(watched)
    args = [a.format(cfg=cfg, tmp=tmp_path) for a in case.args]
    for k, v in case.env_vars.items():
        monkeypatch.setenv(k, v)
    code, text = run_in_process(args, capsys)
    culprit = case.culprit(env) if callable(case.culprit) else case.culprit
    assert code == 2, text
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if "ERROR" in ln or "Error:" in ln]
    assert len(errors) == 1, text
    assert culprit in errors[0], text
    assert SECRET not in text
    assert snapshot(watched) == before, "an input changed"


def test_enough_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", ["cube out is the input world", "resolution zero"])
def test_real_process(name: str, env: Env, tmp_path: Path):
    """The same cases through the installed console script in a fresh process."""
    case = next(c for c in CASES if c.name == name)
    cfg = _write_config(case, env, tmp_path)
    before = snapshot(env.inputs())
    proc = subprocess.run([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()",
                           *[a.format(cfg=cfg, tmp=tmp_path) for a in case.args]],
                          capture_output=True, text=True, timeout=300)
    culprit = case.culprit(env) if callable(case.culprit) else case.culprit
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(lines) == 1 and culprit in lines[0], proc.stderr
    assert snapshot(env.inputs()) == before
