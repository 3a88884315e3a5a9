"""Building blocks of the run configuration: strict frozen models, checked URLs and paths, and the
sections every part of the pipeline shares (storage, STAC, gateway)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


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
_USERINFO_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s@]*@")
_LOCATION_SCHEMES = ("s3://", "file://", "http://", "https://")


def is_remote(location: str) -> bool:
    """True for object-store or http locations, False for local paths (plain or file://)."""
    return "://" in location and not location.startswith("file://")


def _refuse_userinfo(value: str) -> None:
    """Credentials never live in a URL: they would reach logs, lineage and tracebacks."""
    if _USERINFO_RE.match(value):
        raise ValueError("a URL with credentials (user:password@) is refused: put the credentials in the "
                         "environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, MISOMAP_GATEWAY_PASSWORD) and "
                         "give the URL without them")


def _check_http_url(value: str) -> str:
    _refuse_userinfo(value)
    if not _URL_RE.match(value):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def _check_location(value: str) -> str:
    if "://" in value:
        _refuse_userinfo(value)
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


def overlaps(a: str, b: str) -> bool:
    """True when two locations are the same or one lies inside the other (local paths resolved)."""
    def norm(loc: str) -> str:
        if is_remote(loc):
            return loc.rstrip("/")
        return str(Path(loc.removeprefix("file://")).expanduser().resolve())

    x, y = norm(a), norm(b)
    return x == y or x.startswith(y + "/") or y.startswith(x + "/")


class StorageConfig(StrictModel):
    """Object storage endpoint; credentials come from the environment / AWS chain."""

    endpoint_url: HttpUrl | None = None
    region: str | None = None
    anon: bool = False
    max_attempts: int = Field(10, ge=1, le=50)
    """Attempts per S3 request (botocore 'standard' retries: exponential backoff with jitter, up to
    20 s apart), so throttling (503 SlowDown) and an endpoint restarting are ridden out."""

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options; botocore reads credentials from the environment itself."""
        opts: dict[str, Any] = {"anon": self.anon,
                                "config_kwargs": {"retries": {"max_attempts": self.max_attempts,
                                                              "mode": "standard"}}}
        client_kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            client_kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            client_kwargs["region_name"] = self.region
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
        return opts

    def options_for(self, url: str) -> dict[str, Any]:
        """storage_options() for object-store URLs, {} for local paths (which take none)."""
        return self.storage_options() if is_remote(url) else {}


class StacConfig(StrictModel):
    """The STAC API to search."""

    url: HttpUrl | None = None
    timeout_s: float = Field(30.0, gt=0, le=3600)
    max_retries: int = Field(3, ge=0, le=20)


class GatewayConfig(StrictModel):
    """A dask-gateway server; None address means a local dask cluster."""

    address: HttpUrl | None = None
    username: str = "misomap"
    password_env: str = Field("MISOMAP_GATEWAY_PASSWORD", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    workers: int = Field(2, ge=1)

    def password(self) -> str | None:
        """The gateway password, read from the environment variable named by `password_env`."""
        return os.environ.get(self.password_env)
