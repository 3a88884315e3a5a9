"""Environment report: versions, torch device, and whether configured endpoints answer."""

from __future__ import annotations

import importlib
import urllib.error
import urllib.request
from dataclasses import dataclass

from misomap import __version__
from misomap.config import RunConfig


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str


def _version(module: str, attr: str = "__version__") -> Check:
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        return Check(module, False, f"not importable: {err}")
    return Check(module, True, str(getattr(mod, attr, "?")))


def _endpoint(name: str, url: str | None, path: str = "") -> Check:
    if not url:
        return Check(name, True, "not configured")
    try:
        with urllib.request.urlopen(url + path, timeout=5) as resp:  # noqa: S310 - configured endpoint
            return Check(name, True, f"{url} answers (HTTP {resp.status})")
    except urllib.error.HTTPError as err:  # an HTTP answer, even 403, means the service is up
        return Check(name, True, f"{url} answers (HTTP {err.code})")
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return Check(name, False, f"{url} does not answer: {reason}")


def torch_device() -> str:
    """'cuda' when a GPU is usable, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_checks(config: RunConfig) -> list[Check]:
    """All checks, versions first, then the device, then the endpoints."""
    checks = [Check("misomap", True, __version__), _version("torch"), _version("torchvision"),
              _version("rasterio", "__gdal_version__"), _version("zarr"), _version("dask"),
              _version("xarray")]
    checks[3] = Check("GDAL", checks[3].ok, checks[3].detail)
    checks.append(Check("torch device", True, torch_device()))
    checks.append(_endpoint("STAC API", config.stac.url, "/"))
    checks.append(_endpoint("S3", config.storage.endpoint_url, "/"))
    checks.append(_endpoint("dask-gateway", config.gateway.address, "/api/health"))
    return checks
