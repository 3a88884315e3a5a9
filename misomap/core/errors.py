"""Typed exceptions shared across misomap; each message names the thing at fault.

`redact` keeps credentials out of every message: URL userinfo, signed-URL query strings and the
values of the secret environment variables never reach a log line or an output.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any


class MisomapError(Exception):
    """Base class of every error misomap raises on purpose."""


class ConfigError(MisomapError):
    """The run configuration is invalid; the message names the bad field."""


class ServiceError(MisomapError):
    """A local service (S3, STAC API, dask-gateway) failed to start or answer; carries its log."""


class StorageError(MisomapError):
    """Storage refused a read, write, listing or delete; names the URL (credentials redacted)."""


class MissingObjectError(StorageError):
    """The file or object asked for does not exist; names its URL."""


class StorageWriteError(StorageError):
    """An output cannot be written (disk full, read-only, refused); names the path."""


class OwnershipError(MisomapError):
    """An output location holds something this run did not make; it is refused, never deleted."""


class IncompleteInputError(MisomapError):
    """An input store (cube, map, embeddings) was never finished; names it and the command to finish it."""


SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MISOMAP_GATEWAY_PASSWORD")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY = re.compile(r"\?(?=[^\s'\"<>]*=)[^\s'\"<>)\]]+")
"""A query string with parameters, after a full URL or a bare path (urllib3 repeats those): SAS
tokens, signed-URL parameters, `?token=`."""
_PARAM = re.compile(r"(?i)\b(?P<name>(?:access_|refresh_|id_)?token|sig|signature|x-amz-[a-z-]+|password|passwd|pwd|"
                    r"secret|api_?key|credential|skoid|sktid|sks|skv|ske|skt)=[^&\s'\"<>)\]]+")
"""A secret-looking `name=value` outside a query string (form bodies, headers quoted by libraries)."""
_AUTH = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")


def redact(text: str) -> str:
    """`text` without URL credentials (user:pass@), query strings (SAS, signed-URL and `?token=`
    parameters, after a URL or a bare path), secret-looking `name=value` pairs, Authorization
    values and the values of secret environment variables. The one redaction pass every error
    text, log record and stored attribute goes through."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUERY.sub("?***", text)
    text = _PARAM.sub(r"\g<name>=***", text)
    text = _AUTH.sub(r"\g<scheme> ***", text)
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def redact_obj(obj: Any) -> Any:
    """`obj` (JSON-like: dicts, lists, strings) with every string redacted: stored attributes
    (lineage, STAC, map attributes) never keep a credential."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def one_line(err: BaseException) -> str:
    """The error as one redacted line: what failed, lines joined with ' | '."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return redact(" | ".join(lines) or type(err).__name__)


class RedactingFilter(logging.Filter):
    """Redacts every log record's message (credentials, signed-URL tokens) before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:  # the traceback text, third-party messages included, redacted once
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
