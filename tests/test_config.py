"""The run configuration: strict, named errors, no secrets."""

from __future__ import annotations

import logging

import pytest

from misomap.config import RunConfig, config_from_dict, load_config
from misomap.core.errors import ConfigError


def test_yaml_roundtrip(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: t\nworkdir: s3://bucket/prefix/\nstac:\n  url: http://127.0.0.1:7822/\n"
                    "storage:\n  endpoint_url: http://127.0.0.1:9000\n")
    cfg = load_config(path)
    assert cfg.workdir == "s3://bucket/prefix"
    assert cfg.stac.url == "http://127.0.0.1:7822"
    assert cfg.storage.storage_options()["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"


def test_unknown_key_named():
    with pytest.raises(ConfigError, match=r"stac\.colections: unknown key"):
        config_from_dict({"stac": {"colections": ["x"]}})


@pytest.mark.parametrize("field,value", [("stac", {"url": "not a url"}), ("workdir", "ftp://x/y"),
                                         ("storage", {"endpoint_url": "s3://bucket"})])
def test_bad_urls_and_paths_named(field, value):
    with pytest.raises(ConfigError, match=rf"^invalid run configuration.* {field}"):
        config_from_dict({field: value})


def test_secret_in_yaml_refused_and_never_echoed(tmp_path, caplog):
    path = tmp_path / "run.yaml"
    path.write_text("storage:\n  endpoint_url: http://127.0.0.1:9000\n  secret: hunter2-topsecret\n")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as info:
        load_config(path)
    assert "environment" in str(info.value)
    assert "hunter2-topsecret" not in str(info.value)
    assert "hunter2-topsecret" not in caplog.text


def test_gateway_password_from_env(monkeypatch):
    cfg = RunConfig()
    monkeypatch.setenv(cfg.gateway.password_env, "pw-from-env")
    assert cfg.gateway.password() == "pw-from-env"
    assert "pw-from-env" not in cfg.model_dump_json()


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stac: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listy)
