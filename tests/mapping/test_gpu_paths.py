"""The GPU code paths of dense MISO and the map job, checked on the CPU: SDPA window attention,
batch size from free device memory, fp32 heads under bf16 autocast, pinned-buffer output path,
GPU executors. (bench/gpu_check.sh measures them on a GPU.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from misomap.models.miso.attention import use_sdpa
from misomap.models.miso.config import CropConfig, EncoderConfig, LocationConfig, MisoConfig
from misomap.models.miso.dense import DenseMiso, point_batch_for, predict_pedons
from misomap.models.miso.encoders import SwinV2Encoder
from misomap.models.miso.model import MisoModel
from tests.support.trained_miso import COV, IMG, scene

GIB = 2**30


@pytest.mark.parametrize("side", [64, 40])  # 40 px: stage maps not multiples of the window (padding)
def test_sdpa_window_attention_equals_torchvision(side):
    torch.manual_seed(0)
    enc = SwinV2Encoder(EncoderConfig(bands=["a", "b", "c"], embed_dim=16, depths=[2, 2, 2],
                                      num_heads=[1, 2, 4], window_size=4)).eval()
    sdpa = copy.deepcopy(enc)
    assert use_sdpa(sdpa) == 6
    assert sdpa.state_dict().keys() == enc.state_dict().keys()
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        for a, b in zip(enc(x), sdpa(x)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_point_batch_from_total_and_free_memory():
    per_query = 4 * 4 * 4 * 8 * 1024 + 64 * 1024  # the paper model's estimate
    idle = point_batch_for(per_query, 80 * GIB, 79 * GIB)
    assert idle == 2 ** int(np.log2(0.25 * 80 * GIB / per_query)), "a power of two from the total memory"
    assert point_batch_for(per_query, 80 * GIB, 40 * GIB) == idle, "free memory that fits changes nothing"
    busy = point_batch_for(per_query, 80 * GIB, 4 * GIB)
    assert busy < idle and busy * per_query <= 0.6 * 4 * GIB and busy & (busy - 1) == 0
    assert point_batch_for(per_query, 80 * GIB, 0) == 2**10, "never below 1024 queries"


def _tiny_model() -> MisoModel:
    _, grid, _, _ = scene(64)
    torch.manual_seed(1)
    two = {"depths": [1, 1], "num_heads": [1, 2], "embed_dim": 16}
    cfg = MisoConfig(imagery=EncoderConfig(bands=IMG, mean=[0.0] * 4, std=[3.0] * 4, **two),
                     covariates=EncoderConfig(bands=COV, mean=[0.0] * 2, std=[3.0] * 2, **two),
                     location=LocationConfig(bounds=grid.bounds), crops=CropConfig(size_px=32),
                     feature_dim=32, liif={"hidden": 32, "pixel_skip": True})
    return MisoModel(cfg, grid.bounds).eval()


def _points(n: int = 40):
    data, grid, _, _ = scene(64)
    rows, cols = np.mgrid[8:64 - 8:2, 8:64 - 8:2]
    x = grid.xmin + (cols.ravel()[:n * n] + 0.5) * 30
    y = grid.ymax - (rows.ravel()[:n * n] + 0.5) * 30
    return data, grid, x, y


def test_cpu_fp32_outputs_unchanged_by_sdpa_and_host_buffers():
    model = _tiny_model()
    data, grid, x, y = _points()
    plain = predict_pedons(DenseMiso(copy.deepcopy(model), torch.device("cpu"), sdpa=False), data[:4], data[4:],
                           grid, x, y)
    fast = predict_pedons(DenseMiso(copy.deepcopy(model), torch.device("cpu"), sdpa=True, point_batch=100),
                          data[:4], data[4:], grid, x, y)
    for k in ("permafrost", "soil_order"):
        assert fast[k].dtype == np.float32
        np.testing.assert_allclose(fast[k], plain[k], atol=2e-6)


@pytest.mark.parametrize("tail", ["heads", "fuse"])
def test_heads_and_logits_in_fp32_under_bf16_autocast(tail):
    model = _tiny_model()
    seen: dict[str, torch.dtype] = {}
    for name, module in [("head", model.heads.heads["soil_order"]), ("fuse", model.fuse[0]),
                         ("liif", model.img_query.stages[0].mlp[2])]:
        module.register_forward_hook(lambda mod, args, out, name=name: seen.update({name: out.dtype}) and None)
    dense = DenseMiso(model, torch.device("cpu"), amp=True, fp32_tail=tail)
    data, grid, x, y = _points(8)
    out = predict_pedons(dense, data[:4], data[4:], grid, x, y)
    assert seen["head"] == torch.float32 and out["soil_order"].dtype == np.float32
    assert seen["fuse"] == (torch.float32 if tail == "fuse" else torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the autocast the encoders and LIIF run under
        assert model.img_query.stages[0].mlp[2](torch.zeros(1, 32)).dtype == torch.bfloat16


@pytest.mark.slow
def test_bf16_class_flips_at_most_a_tenth_of_a_percent_on_a_trained_model():
    """bf16 autocast (encoders, LIIF) with the fusion, heads and softmax in fp32, against the fp32
    path, on a briefly trained tiny model: classes differ on at most 0.1% of pixels."""
    from tests.support.trained_miso import trained_model

    torch.set_num_threads(1)
    model, data, grid = trained_model()
    n = data.shape[1]
    rows, cols = np.mgrid[16:n - 16, 16:n - 16]
    x, y = grid.xmin + (cols.ravel() + 0.5) * 30, grid.ymax - (rows.ravel() + 0.5) * 30
    ref = predict_pedons(DenseMiso(model, torch.device("cpu")), data[:4], data[4:], grid, x, y)
    amp = predict_pedons(DenseMiso(model, torch.device("cpu"), amp=True, sdpa=True), data[:4], data[4:], grid, x, y)
    assert np.mean((amp["permafrost"] >= 0.5) != (ref["permafrost"] >= 0.5)) <= 0.001
    assert np.mean(amp["soil_order"].argmax(-1) != ref["soil_order"].argmax(-1)) <= 0.001


def test_map_executor_asks_for_gpu_workers_only_for_gpu_maps(tmp_path):
    from misomap.core.config_base import GatewayConfig
    from misomap.mapping.chunk import map_executor
    from misomap.mapping.config import MapConfig
    from misomap.runtime.cluster import local_gpus

    base = {"cube": str(tmp_path / "c.zarr"), "output": str(tmp_path / "m"), "workers": 3}
    auto = map_executor(MapConfig(**base), None)
    assert (auto.gpu, auto.overlap, auto.workers) == (local_gpus() > 0, True, 3)
    assert map_executor(MapConfig(**base, device="cuda", overlap=False), None).gpu
    assert not map_executor(MapConfig(**base, device="cpu"), None).gpu
    remote = GatewayConfig(address="http://127.0.0.1:1")
    assert not map_executor(MapConfig(**base), remote).gpu, "auto on a gateway: the CPU profile"
    assert map_executor(MapConfig(**base, device="cuda"), remote).gpu
