"""Faults injected into the real services and the disk while jobs run: every job either finishes
with output byte-identical to a clean run, or stops with one message naming the fault and leaves
nothing half-written under a final name.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
import zarr
from tests.support.cube_fixtures import cube_section, write_source_world

from misomap.config import config_from_dict
from misomap.core.config_base import StorageConfig
from misomap.jobs.build_cube import run_build_cube
from misomap.jobs.verify import verify
from tests.support import ROOT

CHUNK = 16  # 24 chunks on the 96 x 64 px test world: long enough to fault mid-run
CLI = [sys.executable, "-c", "from misomap.cli import run_cli; run_cli()"]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def s3_tree_bytes(fs, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {p[len(prefix) + 1:]: fs.cat_file(p) for p in sorted(fs.find(prefix))}


def cube_cfg(stac_url: str, out: str, **extra) -> dict:
    return {"stac": {"url": stac_url, "max_retries": 3}, "cube": cube_section(out, chunk=CHUNK, workers=1), **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_source_world(tmp_path_factory.mktemp("fault-world"))


@pytest.fixture(scope="module")
def stac_url(world, stac_api_factory) -> str:
    return stac_api_factory(world.stac_files)


@pytest.fixture(scope="module")
def reference_cube(stac_url, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fault-ref") / "cube.zarr"
    run_build_cube(config_from_dict(cube_cfg(stac_url, str(out))))
    return out


# ---------------------------------------------------------------- a loopback HTTP proxy with faults

class FaultProxy:
    """Forwards HTTP to `upstream`; `fault(method, path, n)` may answer a status instead (n counts
    requests so far). Headers pass unchanged, so S3 signatures stay valid."""

    def __init__(self, upstream: str, fault: Callable[[str, str, int], int | None], rewrite: bool = False) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.rewrite = rewrite
        """Rewrite the upstream's address in bodies (a STAC API links to itself absolutely)."""
        self.fault = fault
        self.count = 0
        self.faults = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.count += 1
                    status = proxy.fault(self.command, self.path, proxy.count)
                    proxy.faults += status is not None
                if status is not None:
                    msg = (b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected</Message>"
                           b"</Error>")
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(msg)))
                    self.send_header("Content-Type", "application/xml")
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if proxy.rewrite:
                    data = data.replace(proxy.upstream.encode(), proxy.url.removeprefix("http://").encode())
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- corrupt and missing chunks

def test_verify_names_corrupt_and_missing_chunks(reference_cube, tmp_path):
    cube = tmp_path / "cube.zarr"
    shutil.copytree(reference_cube, cube)
    shutil.copytree(f"{reference_cube}.progress", f"{cube}.progress")
    shutil.copy(f"{reference_cube}.chunks.json", f"{cube}.chunks.json")
    assert verify(str(cube)).whole
    chunk_files = sorted(p for p in (cube / "data" / "c").rglob("*") if p.is_file())
    a, b = chunk_files[0], chunk_files[1]
    key_a = ".".join(a.relative_to(cube / "data" / "c").parts[1:])
    key_b = ".".join(b.relative_to(cube / "data" / "c").parts[1:])
    a.write_bytes(b.read_bytes())                     # a valid chunk in the wrong place
    b.write_bytes(b.read_bytes()[:-7] + b"garbage")   # a chunk that no longer decodes
    (cube.parent / "cube.zarr.progress" / "2.3.json").unlink()
    proc = subprocess.run([*CLI, "verify", str(cube)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"corrupt chunk {key_a}: checksum differs" in proc.stdout
    assert f"corrupt chunk {key_b}: unreadable" in proc.stdout
    assert "missing chunk 2.3: no completion record" in proc.stdout
    assert "NOT whole" in proc.stdout


def test_verify_map_store(reference_cube, tmp_path, monkeypatch):
    from misomap.jobs.predict import run_predict

    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "map"
    cfg = config_from_dict({"map": {"cube": str(reference_cube), "output": str(out), "model": "tests.support.fault_predictor:factory",
                                    "chunk_px": 32, "workers": 1, "cogs": False}})
    run_predict(cfg)
    report = verify(str(out))
    assert report.kind == "map" and report.whole, report.problems
    chunk = next(p for p in (out / "map.zarr" / "permafrost_probability" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[:-3] + b"xyz")
    report = verify(str(out / "map.zarr"))
    assert not report.whole and any(p.startswith("corrupt chunk") for p in report.problems)


# ---------------------------------------------------------------- staging left by a killed export

def test_staging_of_a_killed_run_is_removed_and_own_staging_always_cleaned(tmp_path, monkeypatch):
    import tempfile

    from misomap.core.storage import staging_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"misomap-export-{dead.pid}-deadbeef"
    stale.mkdir()
    (stale / "permafrost_probability.tif").write_bytes(b"half a COG")
    live = tmp_path / f"misomap-export-{os.getpid()}-cafecafe"
    live.mkdir()
    with pytest.raises(RuntimeError), staging_dir("misomap-export") as mine:
        assert not stale.exists() and live.exists()
        (mine / "x.tif").write_bytes(b"x")
        raise RuntimeError("export failed")
    assert not mine.exists()


# ---------------------------------------------------------------- full disk (a small tmpfs)

def _unshare_ok() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
def test_full_disk_during_export_publishes_nothing_half_written(reference_cube, tmp_path):
    if not _unshare_ok():
        pytest.skip("needs `unshare -rm` (user + mount namespaces) to mount a private tmpfs")
    ref = tmp_path / "ref"
    cfg = {"map": {"cube": str(reference_cube), "output": str(ref / "map"), "model": "tests.support.fault_predictor:factory",
                   "chunk_px": 32, "workers": 1}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    subprocess.run([*CLI, "predict", "-c", str(tmp_path / "ref.yaml")], check=True, env=env, timeout=600,
                   capture_output=True)
    reference = tree_bytes(ref / "map")

    def pages(names: list[str]) -> int:
        return sum(-(-len(reference[n]) // 4096) * 4096 for n in names)

    store = pages([n for n in reference if n.startswith(("map.zarr", "_progress"))])
    disk = tmp_path / "disk"
    disk.mkdir()
    staging = tmp_path / "staging"
    staging.mkdir()
    (tmp_path / "full.yaml").write_text(yaml.safe_dump({"map": {**cfg["map"], "output": str(disk / "map")}},
                                                       sort_keys=False))
    size = 16 * 1024 * 1024
    cogs = pages([n for n in reference if n.startswith("cogs/")])
    # room for the store, the atomic rewrite of its metadata (complete mark), and half the COGs
    filler = size - store - pages(["map.zarr/zarr.json"]) - cogs // 2
    script = f"""
set -u
mount -t tmpfs -o size={size} tmpfs {disk}
head -c {filler} /dev/zero > {disk}/filler
{' '.join(CLI[:2])} "{CLI[2]}" predict -c {tmp_path}/full.yaml > {tmp_path}/run1.log 2>&1; echo "rc1=$?"
find {disk}/map -type f | sort > {tmp_path}/after-fail.txt
find {disk}/map/cogs -type f -exec sha256sum {{}} + > {tmp_path}/cog-sums.txt 2>/dev/null
ls -A {staging} > {tmp_path}/staging.txt
rm {disk}/filler
{' '.join(CLI[:2])} "{CLI[2]}" predict -c {tmp_path}/full.yaml > {tmp_path}/run2.log 2>&1; echo "rc2=$?"
mkdir -p {tmp_path}/copy && cp -r {disk}/map {tmp_path}/copy/
"""
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=900,
                          env={**env, "TMPDIR": str(staging)})
    log1 = (tmp_path / "run1.log").read_text()
    assert "rc1=2" in proc.stdout, log1
    errors = [ln for ln in log1.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and "No space left on device" in errors[0] and str(disk / "map") in errors[0], log1
    after_fail = (tmp_path / "after-fail.txt").read_text().split()
    # the STAC entry point is published last, so a reader never finds a catalog of missing files
    assert not [f for f in after_fail if f.endswith("/stac/collection.json") or ".tmp-" in f], after_fail
    published = [f.split("/map/", 1)[1] for f in after_fail if "/cogs/" in f]
    assert "misomap-export" not in (tmp_path / "staging.txt").read_text()
    sums = {ln.split()[1]: ln.split()[0] for ln in (tmp_path / "cog-sums.txt").read_text().splitlines()}
    for name in published:  # what was published under a final name is whole, byte for byte
        assert sums[f"{disk}/map/{name}"] == hashlib.sha256(reference[name]).hexdigest(), name
    assert zarr.open_group(str(tmp_path / "copy" / "map" / "map.zarr"), mode="r").attrs["misomap_status"] == "complete"
    assert "rc2=0" in proc.stdout, (tmp_path / "run2.log").read_text()
    got = tree_bytes(tmp_path / "copy" / "map")
    assert "stac/collection.json" in got
    located = ("stac/", "viewer/")  # these name their own location
    assert {k: v for k, v in got.items() if not k.startswith(located)} == \
        {k: v for k, v in reference.items() if not k.startswith(located)}


# ---------------------------------------------------------------- STAC API failing mid-search

def _search_fault(fail: int | None) -> Callable[[str, str, int], int | None]:
    seen = {"search": 0}

    def fault(method: str, path: str, n: int) -> int | None:
        if "/search" not in path:
            return None
        seen["search"] += 1
        return 502 if fail is None or seen["search"] <= fail else None
    return fault


def test_stac_api_failing_mid_search_retries_then_names_the_endpoint(stac_url, reference_cube, tmp_path):
    with FaultProxy(stac_url, _search_fault(2), rewrite=True) as proxy:
        out = tmp_path / "retried.zarr"
        run_build_cube(config_from_dict(cube_cfg(proxy.url, str(out))))
        assert proxy.faults == 2
    ref, got = tree_bytes(reference_cube), tree_bytes(out)
    assert got.keys() == ref.keys()
    differ = [k for k in ref if got[k] != ref[k]]
    assert differ == ["zarr.json"]  # only the lineage's endpoint URL differs
    meta = json.loads(got["zarr.json"])["attributes"]["misomap"]
    assert meta["fingerprint"] == json.loads(ref["zarr.json"])["attributes"]["misomap"]["fingerprint"]

    with FaultProxy(stac_url, _search_fault(None), rewrite=True) as proxy:
        out = tmp_path / "failed.zarr"
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(cube_cfg(proxy.url, str(out)), sort_keys=False))
        proc = subprocess.run([*CLI, "cube", "build", "-c", str(tmp_path / "run.yaml")], capture_output=True,
                              text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and proxy.url in errors[0], proc.stderr
    assert not out.exists()  # nothing is written before the search has succeeded


# ---------------------------------------------------------------- S3 throttling and an S3 restart

@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    return s3_server


@pytest.mark.slow
def test_s3_503_throttling_is_ridden_out(stac_url, reference_cube, s3_env, s3fs_filesystem, s3_bucket):
    with FaultProxy(s3_env.endpoint_url, lambda m, p, n: 503 if n % 4 == 0 else None) as proxy:
        url = f"s3://{s3_bucket}/cube.zarr"
        run_build_cube(config_from_dict(cube_cfg(stac_url, url, storage={"endpoint_url": proxy.url})))
        assert proxy.faults > 10
    assert s3_tree_bytes(s3fs_filesystem, f"{s3_bucket}/cube.zarr") == tree_bytes(reference_cube)
    assert verify(url, StorageConfig(endpoint_url=s3_env.endpoint_url)).whole


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_s3_stopped_and_restarted_mid_write(stac_url, reference_cube, tmp_path):
    import s3fs

    from misomap.services.process import ManagedProcess
    from misomap.services.s3 import seaweedfs_s3

    with seaweedfs_s3(tmp_path / "weed") as (server, proc):
        fs = s3fs.S3FileSystem(**server.storage_options())
        fs.mkdir("restart")
        cfg = tmp_path / "run.yaml"
        cfg.write_text(yaml.safe_dump(cube_cfg(stac_url, "s3://restart/cube.zarr",
                                               storage={"endpoint_url": server.endpoint_url}),
                                      sort_keys=False))
        job = subprocess.Popen([*CLI, "cube", "build", "-c", str(cfg)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **server.env()})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            fs.invalidate_cache()
            if len(fs.glob("restart/cube.zarr.progress/*.json")) >= 4:
                break
            time.sleep(0.2)
        proc.stop()                      # SIGTERM: the server goes away mid-build
        time.sleep(2)
        again = ManagedProcess("seaweedfs-again", proc.cmd, tmp_path / "weed2.log", env=proc.env)
        again.start(lambda: _answers(server.endpoint_url))
        try:
            out, err = job.communicate(timeout=600)
            assert job.returncode == 0, err
            got = s3_tree_bytes(fs, "restart/cube.zarr")
        finally:
            again.stop()
    assert got == tree_bytes(reference_cube)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url + "/", timeout=1)
    except urllib.error.HTTPError:
        return True
    return True


# ---------------------------------------------------------------- a gateway worker killed mid-task

@pytest.mark.slow
def test_gateway_worker_killed_mid_map_reruns_its_task(reference_cube, tmp_path, monkeypatch):
    from misomap.jobs.predict import run_predict
    from misomap.services.gateway import dask_gateway_server

    monkeypatch.syspath_prepend(str(ROOT))
    local = tmp_path / "local"
    base = {"cube": str(reference_cube), "model": "tests.support.fault_predictor:factory", "chunk_px": 16, "workers": 2,
            "cogs": False}
    run_predict(config_from_dict({"map": {**base, "output": str(local)}}))
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with dask_gateway_server(tmp_path / "gw", env=env) as (server, proc):
        monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", server.password)
        out = tmp_path / "gw-map"
        cfg = config_from_dict({"map": {**base, "output": str(out)}, "gateway": {"address": server.address}})
        killed: list[int] = []

        def killer() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not killed:
                if len(list((out / "_progress" / "map").glob("*.json"))) >= 3:
                    workers = [p for p in _descendants(proc.proc.pid) if _is_worker(p)]
                    if workers:
                        os.kill(workers[0], signal.SIGKILL)
                        killed.append(workers[0])
                time.sleep(0.05)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        run_predict(cfg)
        thread.join(timeout=5)
    assert killed, "no worker was killed"
    assert tree_bytes(out / "map.zarr") == tree_bytes(local / "map.zarr")


def _is_worker(pid: int) -> bool:
    import psutil

    try:
        cmd = psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return False
    return "worker" in cmd and any("dask" in c for c in cmd[:2])



# ---------------------------------------------------------------- a failed --overwrite run

def test_failed_overwrite_leaves_no_stale_exports_and_an_incomplete_map(reference_cube, tmp_path, monkeypatch):
    from misomap.core.errors import IncompleteInputError
    from misomap.core.storage import Target
    from misomap.mapping.store import require_map_complete
    from misomap.jobs.predict import MapJobError, run_predict

    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "map"
    base = {"cube": str(reference_cube), "output": str(out), "chunk_px": 32, "workers": 1}
    run_predict(config_from_dict({"map": {**base, "model": "tests.support.fault_predictor:factory"}}))
    assert (out / "stac" / "collection.json").exists() and (out / "cogs").exists()
    with pytest.raises(MapJobError) as info:
        run_predict(config_from_dict({"map": {**base, "model": "tests.support.fault_predictor:failing_factory"}}), overwrite=True)
    message = str(info.value)
    assert "\n" not in message and message.count("injected model failure") == 1  # one line per cause
    assert "2 of 6 map chunks failed" in message and "(chunks 0.2, 1.2)" in message
    for stale in ("stac", "cogs", "quicklook.png", "viewer"):
        assert not (out / stale).exists(), stale
    with pytest.raises(IncompleteInputError, match="unfinished"):
        require_map_complete(Target(str(out / "map.zarr")))
    assert not verify(str(out)).whole
