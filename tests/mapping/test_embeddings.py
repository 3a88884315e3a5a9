"""The embedding cube (`misomap embed`): what MISO's heads read, per pixel, on the cube's grid;
resumable and byte-identical on rerun, verified chunk by chunk, refused when made from another cube
or model; and MISO's map filled where the optical bands are missing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from misomap.config import config_from_dict
from misomap.core.inputs import INPUT_CLASSES
from misomap.cube.store import COMPLETE_KEY
from misomap.jobs.embed import run_embed
from misomap.jobs.predict import run_predict
from misomap.jobs.verify import verify
from misomap.mapping.embeddings import EmbeddingStoreError, open_embeddings
from misomap.mapping.layers import NODATA
from misomap.models.miso.train import model_checkpoint_bytes
from tests.mapping.test_map_miso import COV, GRID, IMG, _model

HOLE = (slice(10, 40), slice(50, 90))
KEY = "1.1"  # the chunk a killed run lost (rows 48-95, cols 48-95)
"""Rows, cols where the optical (s2_*) bands have no observation."""


def _cube(path: Path, data: np.ndarray, note: str) -> Path:
    ds = xr.Dataset({"data": (("band", "y", "x"), data, {"grid_mapping": "spatial_ref"})},
                    coords={"band": np.array(IMG + COV, dtype=object), "y": GRID.y_coords(), "x": GRID.x_coords(),
                            "spatial_ref": ((), 0, GRID.spatial_ref_attrs())},
                    attrs={"misomap": {"imagery_datetime": ["2019-06-15T00:00:00Z", "2023-08-15T00:00:00Z"],
                                       "note": note},
                           COMPLETE_KEY: {"records_sha256": "written-whole", "chunks": 0}})
    ds.chunk({"band": -1, "y": 48, "x": 48}).to_zarr(path, zarr_format=3, mode="w", consolidated=True)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from scipy.ndimage import gaussian_filter

    root = tmp_path_factory.mktemp("embed")
    rng = np.random.default_rng(0)
    data = np.stack([gaussian_filter(rng.normal(size=GRID.shape), 2) * 3 for _ in IMG + COV]).astype("float32")
    holed = data.copy()
    holed[: len(IMG), HOLE[0], HOLE[1]] = np.nan
    model = _model(data)
    ckpt = root / "miso.safetensors"
    ckpt.write_bytes(model_checkpoint_bytes(model))
    return {"root": root, "cube": _cube(root / "cube.zarr", holed, "a"), "other_cube": _cube(root / "b.zarr", data, "b"),
            "ckpt": ckpt, "model": model}


def _config(setup: dict, workdir: Path, cube: Path | None = None, ckpt: Path | None = None):
    return config_from_dict({"workdir": str(workdir), "map": {
        "cube": str(cube or setup["cube"]), "output": str(workdir / "map"), "model": "miso",
        "model_path": str(ckpt or setup["ckpt"]), "chunk_px": 48, "workers": 1, "cogs": False}})


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_embeddings_are_what_the_heads_read_resumable_and_byte_identical(setup, tmp_path):
    cfg = _config(setup, tmp_path)
    summary = run_embed(cfg)
    out = Path(summary.output)
    assert summary.chunks_run == 4 and summary.bytes_per_pixel > 0
    emb = open_embeddings(str(out), cube=str(setup["cube"]))
    dim = setup["model"].cfg.feature_dim
    assert emb.dtype == np.float16 and emb.shape == (dim, *GRID.shape)
    assert list(emb["band"].values[:2]) == ["emb_000", "emb_001"]
    values = emb.values
    assert np.isfinite(values).all(), "the optical hole is embedded from the covariates, not left out"
    # the heads on the stored embeddings give the map (up to float16 and uint8-percent rounding)
    run_predict(cfg)
    ds = xr.open_zarr(tmp_path / "map" / "map.zarr")
    with torch.no_grad():
        logit = setup["model"].heads(torch.from_numpy(values.astype(np.float32).reshape(dim, -1).T))["permafrost"]
    p = torch.sigmoid(logit).numpy().reshape(GRID.shape)
    assert np.abs(p - ds["permafrost_probability"].values).max() < 0.02
    assert p.std() > 0.05
    # MISO's map has no hole where only the optical bands are missing, and says so
    inputs = xr.open_zarr(tmp_path / "map" / "map.zarr", mask_and_scale=False)["inputs_used"].values
    assert (inputs[HOLE] == INPUT_CLASSES.index("static")).all()
    assert (ds["soil_order_class"].values[HOLE] != NODATA).all()
    assert (inputs == INPUT_CLASSES.index("optical_static")).sum() == inputs.size - inputs[HOLE].size

    item = json.loads(next((out / "stac").glob("*.json")).read_text())
    assert item["properties"]["misomap:model_sha256"] and item["properties"]["misomap:cube_sha256"]
    assert {a["roles"][0] for a in item["assets"].values()} >= {"data", "mlm:model"}
    # the local cube outside the folder is named by its digest and name, never by a local path
    assert item["properties"].get("misomap:input_cube", {}).get("name") == "cube.zarr"
    assert not any(link["rel"] == "derived_from" for link in item["links"])
    assert verify(str(out)).whole

    first = _digests(out)
    store = out / "embeddings.zarr"
    # a killed run: one chunk's data and record lost, the complete mark gone -> rerun redoes only that
    (store / "embedding" / "c" / "0" / "1" / "1").unlink()
    (out / "_progress" / "embeddings" / f"{KEY}.json").unlink()
    again = run_embed(cfg)
    assert again.chunks_run == 1
    assert _digests(out) == first
    assert run_embed(cfg).chunks_run == 0

    # corruption is found, chunk by chunk
    chunk = next(p for p in sorted((store / "embedding").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"garbage")
    report = verify(str(store))
    assert report.kind == "embedding cube" and not report.whole
    assert any("corrupt" in p for p in report.problems)


def test_embeddings_of_another_cube_or_model_refused(setup, tmp_path):
    cfg = _config(setup, tmp_path)
    out = Path(run_embed(cfg).output)
    other = tmp_path / "other.safetensors"
    model = _model(np.zeros((len(IMG + COV), 96, 96), np.float32))
    with torch.no_grad():
        model.heads.heads["permafrost"].bias.add_(1.0)
    other.write_bytes(model_checkpoint_bytes(model))
    before = _digests(out)
    with pytest.raises(EmbeddingStoreError, match=r"another input \(model [0-9a-f]{16} != [0-9a-f]{16}"):
        run_embed(_config(setup, tmp_path, ckpt=other))
    with pytest.raises(EmbeddingStoreError, match=r"another input \(cube [0-9a-f]{16} != [0-9a-f]{16}"):
        run_embed(_config(setup, tmp_path, cube=setup["other_cube"]))
    assert _digests(out) == before, "a refused run changes nothing"
    with pytest.raises(EmbeddingStoreError, match=r"cube [0-9a-f]{16} != [0-9a-f]{16}"):
        open_embeddings(str(out), cube=str(setup["other_cube"]))
    with pytest.raises(EmbeddingStoreError, match=r"model [0-9a-f]{16} != beef"):
        open_embeddings(str(out), model_sha256="beef")
