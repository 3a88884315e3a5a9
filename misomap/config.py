"""The one run configuration every job takes, loadable from YAML.

Secrets never live here: S3 credentials come from the environment or the standard AWS chain,
the gateway password from an environment variable whose *name* the config holds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from misomap.errors import ConfigError

SECRET_FIELD_NAMES = frozenset(
    {
        "key",
        "secret",
        "password",
        "token",
        "access_key",
        "secret_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)
_URL_RE = re.compile(r"^(https?)://[^\s/:]+(:\d{1,5})?(/\S*)?$")
_LOCATION_SCHEMES = ("s3://", "file://", "http://", "https://")


def _check_http_url(value: str) -> str:
    if not _URL_RE.match(value):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def _check_location(value: str) -> str:
    if "://" in value:
        if not value.startswith(_LOCATION_SCHEMES):
            raise ValueError(f"unsupported scheme in {value!r}; use a local path or {_LOCATION_SCHEMES}")
        if value.startswith("s3://") and len(value) <= len("s3://"):
            raise ValueError("s3:// location needs a bucket name")
        return value.rstrip("/")
    if not value.strip():
        raise ValueError("empty path")
    return str(Path(value).expanduser())


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
"""An http(s) URL, trailing slash removed."""
Location = Annotated[str, AfterValidator(_check_location)]
"""A local path or an s3://, file:// or http(s):// URL."""


class StrictModel(BaseModel):
    """Frozen, unknown keys rejected, and secret-looking keys refused with a pointer to the env."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in data:
                if str(name).lower() in SECRET_FIELD_NAMES:
                    raise ValueError(
                        f"'{name}' looks like a secret; secrets are never read from the config: "
                        "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the AWS chain) and "
                        "MISOMAP_GATEWAY_PASSWORD in the environment"
                    )
        return data


def is_remote(location: str) -> bool:
    """True for object-store or http locations, False for local paths."""
    return "://" in location and not location.startswith("file://")


class StorageConfig(StrictModel):
    """Object storage endpoint; credentials come from the environment / AWS chain."""

    endpoint_url: HttpUrl | None = None
    region: str | None = None
    anon: bool = False

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options; botocore reads credentials from the environment itself."""
        opts: dict[str, Any] = {"anon": self.anon}
        client_kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            client_kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            client_kwargs["region_name"] = self.region
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
        return opts


class StacConfig(StrictModel):
    """The STAC API to search."""

    url: HttpUrl | None = None
    timeout_s: float = 30.0
    max_retries: int = 3


class GatewayConfig(StrictModel):
    """A dask-gateway server; None address means a local dask cluster."""

    address: HttpUrl | None = None
    username: str = "misomap"
    password_env: str = "MISOMAP_GATEWAY_PASSWORD"
    workers: int = 2

    def password(self) -> str | None:
        """The gateway password, read from the environment variable named by `password_env`."""
        return os.environ.get(self.password_env)


class RunConfig(StrictModel):
    """Everything one run needs; each section belongs to one part of the pipeline."""

    name: str = "misomap-run"
    workdir: Location = "misomap-out"
    seed: int = 0
    storage: StorageConfig = StorageConfig()
    stac: StacConfig = StacConfig()
    gateway: GatewayConfig = GatewayConfig()


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid run configuration in {source}:"]
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a mapping into a RunConfig, raising ConfigError that names each bad field."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path) -> RunConfig:
    """Load and validate a YAML run configuration."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read run configuration {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return config_from_dict(data, source=str(path))
