"""A dask-gateway server with the local backend and password auth, on loopback."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from misomap.core.errors import ServiceError
from misomap.services.process import ManagedProcess, free_port

_CONFIG_TEMPLATE = """
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.address = "127.0.0.1:{api_port}"
c.Proxy.address = "127.0.0.1:{proxy_port}"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {password!r}
c.ClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{dask!r}, "worker"]
c.ClusterConfig.worker_cores = 1
c.ClusterConfig.worker_memory = "2 G"
c.ClusterConfig.idle_timeout = 600
c.LocalBackend.clusters_directory = {clusters_dir!r}
c.LocalBackend.inherited_environment = ["PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION",
    "OMP_NUM_THREADS"]
"""


@dataclass(frozen=True)
class GatewayServer:
    """A running gateway: its public (proxy) URL and the password it accepts (never logged)."""

    address: str
    password: str


def _binary(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise ServiceError(f"`{name}` not found: install dask-gateway-server[local] and distributed")
    return found


def _health_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
        return resp.status == 200 and json.loads(resp.read()).get("status") == "pass"


@contextmanager
def dask_gateway_server(workdir: Path, password: str | None = None, timeout: float = 60.0,
                        env: dict[str, str] | None = None) -> Iterator[tuple[GatewayServer, ManagedProcess]]:
    """Start dask-gateway-server (UnsafeLocalBackend, SimpleAuthenticator); always stopped.

    Workers inherit PATH/PYTHONPATH and the AWS credential variables of the server's environment
    (`env` adds to it), so they read the same object store as the client. The password is
    $MISOMAP_GATEWAY_PASSWORD, else generated for this run; the config file holding it is 0600.
    """
    password = password or os.environ.get("MISOMAP_GATEWAY_PASSWORD") or secrets.token_urlsafe(24)
    workdir.mkdir(parents=True, exist_ok=True)
    api_port, proxy_port = free_port(), free_port()
    while proxy_port == api_port:
        proxy_port = free_port()
    config = workdir / "dask_gateway_config.py"
    text = _CONFIG_TEMPLATE.format(api_port=api_port, proxy_port=proxy_port, password=password,
                                   dask=_binary("dask"), clusters_dir=str(workdir / "clusters"))
    config.unlink(missing_ok=True)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    proc = ManagedProcess("dask-gateway", [_binary("dask-gateway-server"), "-f", str(config)],
                          workdir / "gateway.log", cwd=workdir, env=env)
    # ready only once the proxy routes /api to the gateway (its routing table arrives late)
    proc.start(lambda: _health_ok(f"http://127.0.0.1:{proxy_port}/api/health"), timeout=timeout)
    try:
        yield GatewayServer(f"http://127.0.0.1:{proxy_port}", password), proc
    finally:
        proc.stop()
