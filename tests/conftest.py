"""Session fixtures that start real services on loopback and always tear them down.

A service that cannot start fails the test with its log; nothing is skipped silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from misomap.services.gateway import GatewayServer, dask_gateway_server
from misomap.services.process import ManagedProcess
from misomap.services.s3 import S3Server, seaweedfs_s3

_RUNNING: list[ManagedProcess] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On a failing test, attach the logs of the services running at the time."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _RUNNING:
        for proc in _RUNNING:
            report.sections.append((f"service log: {proc.name}", proc.log_text()))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS S3 server with credentials, on free loopback ports."""
    with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as (server, proc):
        _RUNNING.append(proc)
        try:
            yield server
        finally:
            _RUNNING.remove(proc)


@pytest.fixture(scope="session")
def s3fs_filesystem(s3_server: S3Server):
    """An fsspec S3 filesystem authenticated against the fixture server."""
    import s3fs

    return s3fs.S3FileSystem(**s3_server.storage_options())


@pytest.fixture
def s3_bucket(s3fs_filesystem, request: pytest.FixtureRequest) -> str:
    """A fresh bucket per test, named after the test."""
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    if not s3fs_filesystem.exists(name):
        s3fs_filesystem.mkdir(name)
    return name


@pytest.fixture(scope="session")
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A real dask-gateway server (local backend, password auth) on loopback."""
    # workers may import test-only helper modules (e.g. a test predictor) from tests/
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH")]))}
    with dask_gateway_server(tmp_path_factory.mktemp("gateway"), env=env) as (server, proc):
        _RUNNING.append(proc)
        try:
            yield server
        finally:
            _RUNNING.remove(proc)


@pytest.fixture(scope="session")
def stac_api_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start a STAC API server over given files: `url = stac_api_factory([paths])`; all torn down."""
    from contextlib import ExitStack

    from misomap.services.stac_api import stac_api_server

    with ExitStack() as stack:
        def start(hrefs: list[str | Path]) -> str:
            url, proc = stack.enter_context(stac_api_server(hrefs, tmp_path_factory.mktemp("rustac")))
            _RUNNING.append(proc)
            stack.callback(_RUNNING.remove, proc)
            return url

        yield start


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo world (STAC + COGs + labels + truth), generated once per session; its folder."""
    from misomap.demo.world import generate_world

    out = tmp_path_factory.mktemp("demo-world") / "world"
    generate_world(out, seed=0, size="tiny")
    return out


@pytest.fixture(scope="session")
def demo_stac_api(demo_world: Path, stac_api_factory) -> str:
    """The tiny demo world's collections and items served by a real STAC API; its root URL."""
    from misomap.demo.world import rustac_serve_files

    return stac_api_factory(rustac_serve_files(demo_world))
