"""Every URL-taking field of the verbs, given a probe secret (URL userinfo, `?token=`, signed-URL
parameters): the secret appears in no output, no log line and no stored file, whatever failed and
whatever a third-party library appended to its error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from misomap.core.errors import redact
from tests.support.cli import run_in_process
from tests.support.cube_fixtures import cube_section, write_source_world

PROBE = "PR0BE-s3cr3t-9f1c"
CLOSED = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def stac_url(tmp_path_factory, stac_api_factory) -> str:
    return stac_api_factory(write_source_world(tmp_path_factory.mktemp("sweep-world")).stac_files)


def _run(args: list[str], capsys) -> tuple[int, str]:
    return run_in_process(args, capsys, "DEBUG")


def _stored(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and PROBE.encode() in p.read_bytes()]


def _cases(stac: str, tmp: Path) -> dict[str, tuple[list[str], dict | None]]:
    token = f"/?token={PROBE}&sig={PROBE}"
    cube = {"stac": {"url": stac + token}, "cube": cube_section(str(tmp / "cube.zarr"), workers=1)}
    return {
        "stac.url ?token= on a cube build (stored lineage)": (["cube", "build", "-c", "{cfg}"], cube),
        "stac.url ?token= on a closed port": (["cube", "build", "-c", "{cfg}"],
                                              {**cube, "stac": {"url": CLOSED + "/x" + token[1:], "max_retries": 0}}),
        "stac.url with userinfo": (["config-check", "-c", "{cfg}"], {"stac": {"url": f"http://u:{PROBE}@h/x"}}),
        "doctor with stac.url and endpoint tokens": (["doctor", "-c", "{cfg}"],
                                                     {"stac": {"url": CLOSED + token},
                                                      "storage": {"endpoint_url": CLOSED + token}}),
        "cube.out with userinfo": (["cube", "build", "-c", "{cfg}"],
                                   {**cube, "cube": cube_section(f"s3://ak:{PROBE}@bucket/c.zarr")}),
        "storage.endpoint_url ?token= down": (["cube", "build", "-c", "{cfg}"],
                                              {**cube, "cube": cube_section("s3://bucket/c.zarr"),
                                               "storage": {"endpoint_url": CLOSED + token}}),
        "publish.root with userinfo": (["config-check", "-c", "{cfg}"],
                                       {"publish": {"root": f"s3://ak:{PROBE}@bucket/pub"}}),
        "gateway address with userinfo": (["config-check", "-c", "{cfg}"],
                                          {"gateway": {"address": f"http://u:{PROBE}@127.0.0.1:9"}}),
        "import-spectra into an s3 URL with userinfo": (["import-spectra", f"s3://ak:{PROBE}@bucket/lib.zarr",
                                                         "--mir", str(tmp / "absent.csv")], None),
        "predict --gateway with a token": (["predict", "-c", "{cfg}", "--gateway", CLOSED + token],
                                           {"map": {"cube": str(tmp / "cube.zarr"), "output": str(tmp / "map"),
                                                    "model": "rf", "model_path": str(tmp / "rf")}}),
    }


def test_no_probe_secret_in_any_output_log_or_store(stac_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", "gw-pass-for-sweep")
    failures = []
    work = tmp_path / "work"
    work.mkdir()
    for name, (args, cfg) in _cases(stac_url, work).items():
        path = tmp_path / "run.yaml"
        if cfg is not None:
            path.write_text(yaml.safe_dump(cfg))
        code, text = _run([a.format(cfg=path) for a in args], capsys)
        if PROBE in text:
            failures.append(f"{name}: in the output: {text[text.index(PROBE) - 120:][:240]!r}")
        if "Traceback" in text:
            failures.append(f"{name}: a traceback (exit {code})")
        if stored := _stored(work):
            failures.append(f"{name}: stored in {stored}")
        path.unlink(missing_ok=True)
    assert not failures, "\n".join(failures)
    assert (work / "cube.zarr" / "zarr.json").exists(), "the tokened STAC URL built the cube"


@pytest.mark.parametrize("text", [
    f"HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /search?token={PROBE} (Caused by",
    f"GET file:///data/a.tif?se=2026&sig={PROBE} failed", f"s3://AKIA:{PROBE}@bucket/key",
    f"Authorization: Bearer {PROBE}", f"form body password={PROBE}&user=x",
    f"https://acct.blob.core.windows.net/c/b.tif?sv=2021&X-Amz-Signature={PROBE}",
])
def test_redact_removes_what_libraries_append(text):
    assert PROBE not in redact(text)
