"""Security: loopback-only sockets, the gateway password kept private, exact skops allow-lists,
credentials redacted from messages and logs."""

from __future__ import annotations

import logging
import stat

import psutil
import pytest
import skops.io as sio
from sklearn.model_selection import ShuffleSplit

from misomap.core.errors import RedactingFilter, redact
from misomap.runtime.cluster import dask_client
from misomap.models.spectral.regressors import regressor_from_bytes
from misomap.spectra.errors import SpectralError


def _listening(pids: list[int]) -> list[str]:
    addrs = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            addrs.append(c.laddr.ip)
    return addrs


def test_local_dask_cluster_listens_on_loopback_only():
    with dask_client(1) as client:
        me = psutil.Process()
        pids = [me.pid] + [p.pid for p in me.children(recursive=True)]
        addrs = _listening(pids)
        assert client.dashboard_link.startswith("http://127.0.0.1:")
    assert addrs and set(addrs) == {"127.0.0.1"}, addrs


def test_gateway_password_generated_and_config_private(tmp_path, monkeypatch):
    from misomap.services.gateway import dask_gateway_server

    monkeypatch.delenv("MISOMAP_GATEWAY_PASSWORD", raising=False)
    with dask_gateway_server(tmp_path / "gw") as (server, proc):
        config = tmp_path / "gw" / "dask_gateway_config.py"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert len(server.password) >= 24 and server.password != "misomap-gateway"
        pids = [proc.proc.pid] + [p.pid for p in psutil.Process(proc.proc.pid).children(recursive=True)]
        assert set(_listening(pids)) == {"127.0.0.1"}
    monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", "from-the-environment-123")
    with dask_gateway_server(tmp_path / "gw2") as (server, _):
        assert server.password == "from-the-environment-123"


def test_spectral_skops_allow_list_is_exact():
    blob = sio.dumps({"cv": ShuffleSplit(2)})  # an sklearn type no regressor file carries
    with pytest.raises(SpectralError, match="untrusted types.*ShuffleSplit"):
        regressor_from_bytes(blob)
    with pytest.raises(SpectralError, match="not a readable skops"):
        regressor_from_bytes(b"PK\x03\x04 cut short")


def test_signed_hrefs_and_env_secrets_redacted_in_logs(caplog, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret")
    log = logging.getLogger("misomap.test-redaction")
    caplog.handler.addFilter(RedactingFilter())
    log.error("cannot read %s (key %s)", "https://acct.blob.example/c/x.tif?sv=2024&sig=SIGNATURE123",
              "wJalrXUtnFEMI-secret")
    assert "SIGNATURE123" not in caplog.text and "wJalrXUtnFEMI-secret" not in caplog.text
    assert "https://acct.blob.example/c/x.tif?***" in caplog.text
    assert redact("s3://AKIA:topsecret@bucket/k") == "s3://***@bucket/k"
