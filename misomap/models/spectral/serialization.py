"""Spectral torch models to and from safetensors bytes, their architecture in the file's metadata.

Bytes in, bytes out: jobs decide where the bytes live (no pickle anywhere)."""

from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from misomap.spectra.errors import SpectralError


def module_to_bytes(module: torch.nn.Module, kind: str, arch: dict[str, Any]) -> bytes:
    """safetensors bytes of the module's state, with `kind` and `arch` (JSON) as metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    return st_save(state, metadata={"kind": kind, "arch": json.dumps(arch, sort_keys=True)})


def read_metadata(data: bytes) -> tuple[str, dict[str, Any]]:
    """(`kind`, architecture) from a safetensors header (8-byte length, then JSON)."""
    try:
        length = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + length]).get("__metadata__", {})
    except (ValueError, UnicodeDecodeError):
        meta = {}
    if "kind" not in meta or "arch" not in meta:
        raise SpectralError("not a misomap spectral model: safetensors 'kind'/'arch' metadata missing")
    return meta["kind"], json.loads(meta["arch"])


def load_state(module: torch.nn.Module, data: bytes) -> torch.nn.Module:
    """Load safetensors bytes into `module` (strict) and set it to eval mode."""
    module.load_state_dict(st_load(data), strict=True)
    return module.eval()
