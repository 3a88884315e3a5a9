"""`rustac serve` as a real STAC API server (in-memory backend) on loopback."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from misomap.core.errors import ServiceError
from misomap.services.process import ManagedProcess, free_port


def rustac_binary() -> str:
    """Path of the `rustac` CLI from the rustac package (beside this interpreter first)."""
    local = Path(sys.executable).parent / "rustac"
    found = str(local) if local.exists() else shutil.which("rustac")
    if not found:
        raise ServiceError("`rustac` not found: install the rustac package")
    return found


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
        return resp.status == 200


@contextmanager
def stac_api_server(hrefs: Sequence[str | Path], workdir: Path, timeout: float = 30.0,
                    ) -> Iterator[tuple[str, ManagedProcess]]:
    """Serve collection and item(-collection) files; yields the API's root URL. Always stopped."""
    port = free_port()
    cmd = [rustac_binary(), "serve", "--use-duckdb", "false", "--addr", f"127.0.0.1:{port}",
           *[str(h) for h in hrefs]]
    proc = ManagedProcess("stac-api", cmd, workdir / "rustac.log")
    url = f"http://127.0.0.1:{port}"
    proc.start(lambda: _answers(url + "/collections"), timeout=timeout)
    try:
        yield url, proc
    finally:
        proc.stop()
