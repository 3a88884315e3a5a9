"""The command-line program, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from misomap import __version__
from misomap.cli import app

runner = CliRunner()


def _commands() -> list[str]:
    return sorted(c.name or c.callback.__name__ for c in app.registered_commands) + sorted(
        g.name for g in app.registered_groups)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize("command", _commands())
def test_help_on_every_command(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bad_log_level():
    result = runner.invoke(app, ["--log-level", "LOUD", "doctor"])
    assert result.exit_code != 0


def test_config_error_is_one_clear_line(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("stac:\n  nope: 1\n")
    proc = subprocess.run([sys.executable, "-c", "from misomap.cli import run_cli; run_cli()",
                           "config-check", "--config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "stac.nope: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doctor_reports_versions_device_and_endpoints(s3_server, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"storage:\n  endpoint_url: {s3_server.endpoint_url}\nstac:\n  url: http://127.0.0.1:9\n")
    result = runner.invoke(app, ["doctor", "--config", str(cfg)])
    out = result.output
    for name in ("misomap", "torch", "GDAL", "zarr", "dask", "torch device"):
        assert name in out
    assert "cpu" in out or "cuda" in out
    assert f"{s3_server.endpoint_url} answers" in out
    assert "http://127.0.0.1:9 does not answer" in out
    assert result.exit_code == 1  # the unreachable STAC endpoint is a failure
