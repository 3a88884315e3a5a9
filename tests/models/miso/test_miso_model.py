"""MISO model parts: encoders, LIIF, Space2Vec, InfoNCE, heads/losses, dense vs point inference."""

from __future__ import annotations

import math

import pytest
import torch

from misomap.models.miso.config import EncoderConfig, LiifConfig, LocationConfig, LossConfig, MisoConfig
from misomap.models.miso.contrastive import info_nce
from misomap.models.miso.encoders import build_encoder
from misomap.models.miso.heads import TaskLoss, entropy, probabilities
from misomap.models.miso.liif import LiifQuery
from misomap.models.miso.location import GridCellFeatures, LocationEncoder
from misomap.models.miso.model import MisoModel, parameter_count

torch.set_num_threads(1)
BOUNDS = (100_000.0, 1_000_000.0, 160_000.0, 1_060_000.0)


def small_cfg(**kw) -> MisoConfig:
    base = dict(imagery=EncoderConfig(bands=[f"s2_{i}" for i in range(5)], embed_dim=16),
                covariates=EncoderConfig(bands=["elevation", "slope"], embed_dim=16),
                feature_dim=32, liif=LiifConfig(hidden=32), location=LocationConfig(num_scales=8, hidden=32))
    return MisoConfig(**{**base, **kw})


def test_swin_encoder_adapts_first_layer_and_returns_every_stage() -> None:
    enc = build_encoder(EncoderConfig(bands=list("abcdefg"), embed_dim=16, depths=[2, 1, 1],
                                      num_heads=[1, 2, 4]), 64)
    assert enc.stem.in_channels == 7
    outs = enc(torch.randn(2, 7, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]


def test_vit_encoder_gives_four_stage_maps_at_any_size() -> None:
    enc = build_encoder(EncoderConfig(arch="vit", bands=list("abcdef"), embed_dim=32, patch_size=8,
                                      vit_depth=4, vit_heads=2), 32)
    outs = enc(torch.randn(1, 6, 48, 40))
    assert len(outs) == 4 and all(tuple(o.shape) == (1, 32, 6, 5) for o in outs)


def test_paper_scale_swin_v2_b_builds() -> None:
    cfg = MisoConfig(imagery=EncoderConfig.swin_v2_b([f"b{i}" for i in range(9)]),
                     covariates=EncoderConfig.swin_v2_b([f"c{i}" for i in range(10)]), feature_dim=1024,
                     liif=LiifConfig(hidden=256))
    with torch.device("meta"):
        model = MisoModel(cfg, BOUNDS)
    assert model.img_encoder.stem.in_channels == 9 and model.cov_encoder.stem.in_channels == 10
    assert model.img_encoder.out_channels == [128, 256, 512, 1024]
    assert parameter_count(model) > 2 * 86_000_000  # two swin_v2_b backbones and more


def test_liif_blend_weights_sum_to_one() -> None:
    """A constant map and an MLP blind to offsets give the same answer at any continuous point."""
    q = LiifQuery([8], hidden=16, out_dim=4).stages[0]
    with torch.no_grad():
        q.mlp[0].weight[:, 8:] = 0  # ignore offset and cell inputs
    feat = torch.randn(1, 8, 1, 1).expand(1, 8, 5, 7).contiguous()
    coords = torch.rand(1, 13, 2) * 2 - 1
    out = q(feat, coords, torch.full((1, 13, 2), 0.1))
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-5)


def test_liif_is_continuous_between_pixel_centres() -> None:
    torch.manual_seed(0)
    liif = LiifQuery([8, 16], hidden=16, out_dim=4)
    feats = [torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)]
    xs = torch.linspace(-0.5, 0.5, 201)
    coords = torch.stack([xs, torch.zeros_like(xs)], -1)[None]
    out = liif(feats, coords, torch.full_like(coords, 2 / 32))
    steps = (out[0, 1:] - out[0, :-1]).norm(dim=-1)
    assert steps.max() < 0.25 * (out[0, -1] - out[0, 0]).norm() + 0.05
    assert len(torch.unique(out[0, :, 0])) > 150  # not piecewise constant per cell


def test_space2vec_scales_and_scaling_to_unit_square() -> None:
    f = GridCellFeatures(num_scales=16, min_wavelength=5e-4, max_wavelength=2.0)
    assert f.out_dim == 96
    wavelengths = 1 / f.proj.norm(dim=1)
    assert math.isclose(float(wavelengths.min()), 5e-4, rel_tol=1e-4)
    assert math.isclose(float(wavelengths.max()), 2.0, rel_tol=1e-4)
    enc = LocationEncoder(LocationConfig(num_scales=16, hidden=32), BOUNDS, 8)
    corners = torch.tensor([[BOUNDS[0], BOUNDS[1]], [BOUNDS[2], BOUNDS[3]]], dtype=torch.float64)
    assert torch.allclose(enc.scale(corners), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    emb = enc(torch.tensor([[120_000.0, 1_020_000.0], [120_030.0, 1_020_000.0]], dtype=torch.float64))
    assert emb.shape == (2, 8) and not torch.allclose(emb[0], emb[1])


def test_location_wavelengths_are_fractions_of_the_region() -> None:
    enc = LocationEncoder(LocationConfig(num_scales=4, min_wavelength=0.125, max_wavelength=2.0), BOUNDS, 8)
    wavelengths = 1 / enc.features.proj.norm(dim=1)  # in scaled units: the extent is 2
    assert math.isclose(float(wavelengths.min()), 0.25, rel_tol=1e-4)
    assert math.isclose(float(wavelengths.max()), 4.0, rel_tol=1e-4)


def test_location_encoder_rejects_empty_bounds() -> None:
    with pytest.raises(ValueError, match="empty"):
        LocationEncoder(LocationConfig(), (1.0, 1.0, 1.0, 2.0), 8)


def test_info_nce_symmetric_and_rewards_alignment() -> None:
    torch.manual_seed(0)
    a = torch.randn(32, 16)
    b = a + 0.1 * torch.randn(32, 16)
    aligned = info_nce(a, b, 0.1)
    assert torch.isclose(aligned, info_nce(b, a, 0.1))
    assert aligned < info_nce(a, b[torch.randperm(32)], 0.1)
    assert info_nce(a[:1], b[:1], 0.1) == 0
    with pytest.raises(ValueError, match="shapes differ"):
        info_nce(a, b[:, :8], 0.1)


def test_losses_ignore_missing_labels_and_focal_downweights_easy_points() -> None:
    logits = {"permafrost": torch.tensor([4.0, -4.0, 0.0]), "soil_order": torch.zeros(3, 7)}
    pf, so = torch.tensor([1, 0, -1]), torch.tensor([-1, -1, -1])
    bce = TaskLoss(LossConfig())(logits, pf, so)
    focal = TaskLoss(LossConfig(permafrost_loss="focal"))(logits, pf, so)
    assert bce["soil_order"] == 0
    assert 0 < focal["permafrost"] < bce["permafrost"]
    both_missing = TaskLoss(LossConfig())(logits, torch.full((3,), -1), so)
    assert both_missing["permafrost"] == 0


def test_balanced_class_weights_favour_rare_classes() -> None:
    loss = TaskLoss(LossConfig(class_weights="balanced"))
    loss.fit_weights(torch.tensor([1, 0, 0, 0, -1]), torch.tensor([2, 2, 2, 4, -1]))
    assert loss.pos_weight == 3.0
    assert loss.soil_weight[4] > loss.soil_weight[2] > 0 and loss.soil_weight[0] == 0
    plain = TaskLoss(LossConfig(class_weights="none"))
    plain.fit_weights(torch.tensor([1, 0, 0, 0, -1]), torch.tensor([2, 2, 2, 4, -1]))
    assert plain.pos_weight == 1.0 and (plain.soil_weight == 1).all()


def test_entropy_bounds() -> None:
    probs = probabilities({"permafrost": torch.tensor([0.0, 20.0]), "soil_order": torch.zeros(1, 7)})
    ent = entropy(probs)
    assert math.isclose(float(ent["permafrost"][0]), math.log(2), rel_tol=1e-5)
    assert float(ent["permafrost"][1]) < 1e-3
    assert math.isclose(float(ent["soil_order"][0]), math.log(7), rel_tol=1e-5)


@pytest.mark.parametrize("role", ["alignment", "input"])
def test_dense_inference_agrees_with_point_prediction_and_batching(role: str) -> None:
    torch.manual_seed(0)
    model = MisoModel(small_cfg(location=LocationConfig(num_scales=8, hidden=32, role=role)), BOUNDS)
    img, cov = torch.randn(1, 5, 64, 64), torch.randn(1, 2, 64, 64)
    pix = torch.rand(1, 40, 2) * 64
    xy = torch.tensor([BOUNDS[0], BOUNDS[3]]) + pix.double() * torch.tensor([30.0, -30.0])
    points = model.predict_points(img, cov, pix, xy)
    dense = model.predict_dense(img[0], cov[0], pix[0], xy[0], batch_points=7)
    for key in ("permafrost", "soil_order", "permafrost_entropy", "soil_order_entropy"):
        assert torch.allclose(points[key][0], dense[key], atol=1e-5), key


@pytest.mark.parametrize("role", ["alignment", "input"])
def test_location_reaches_the_heads_only_in_an_input_model(role: str) -> None:
    """An `alignment` model reads only pixels and covariates (the same point moved elsewhere gets the
    same answer); its location embedding still comes out for the contrastive loss. An `input` model's
    answer moves with the coordinates."""
    torch.manual_seed(0)
    model = MisoModel(small_cfg(location=LocationConfig(num_scales=8, hidden=32, role=role)), BOUNDS).eval()
    img, cov, pix = torch.randn(1, 5, 32, 32), torch.randn(1, 2, 32, 32), torch.rand(1, 6, 2) * 32
    here = torch.full((1, 6, 2), 110_000.0, dtype=torch.float64) + torch.tensor([0.0, 900_000.0], dtype=torch.float64)
    there = here + torch.tensor([40_000.0, 50_000.0], dtype=torch.float64)
    with torch.no_grad():
        a, b = model(img, cov, pix, here), model(img, cov, pix, there)
    assert a.location is not None and not torch.allclose(a.location, b.location)
    same = all(torch.equal(a.logits[t], b.logits[t]) for t in a.logits)
    assert same == (role == "alignment")


def test_tile_not_a_multiple_of_the_stride_and_nodata_give_finite_output() -> None:
    model = MisoModel(small_cfg(), BOUNDS)
    img = torch.full((5, 50, 70), float("nan"))
    cov = torch.randn(2, 50, 70)
    pix = torch.tensor([[0.1, 0.1], [69.9, 49.9], [35.0, 25.0]])
    out = model.predict_dense(img, cov, pix, torch.zeros(3, 2, dtype=torch.float64) + 120_000.0)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_covariate_model_needs_covariates() -> None:
    model = MisoModel(small_cfg(), BOUNDS)
    with pytest.raises(ValueError, match="covariate"):
        model.encode(torch.randn(1, 5, 32, 32), None)


def test_single_task_and_no_location_models() -> None:
    cfg = small_cfg(covariates=None, loss=LossConfig(tasks=["soil_order"]),
                    location=LocationConfig(enabled=False))
    model = MisoModel(cfg, BOUNDS)
    out = model(torch.randn(2, 5, 32, 32), None, torch.rand(2, 3, 2) * 32, torch.zeros(2, 3, 2))
    assert set(out.logits) == {"soil_order"} and out.location is None and out.covariates is None


def test_pixel_skip_feeds_the_query_pixels_own_bands() -> None:
    model = MisoModel(small_cfg(), BOUNDS).eval()
    img, cov = torch.randn(1, 5, 32, 32), torch.randn(1, 2, 32, 32)
    enc = model.encode(img, cov)
    pix = torch.tensor([[[3.5, 7.2], [31.9, 0.1]]])
    vals = model._pixel_values(enc.pixels, pix)
    assert torch.equal(vals[0, 0], torch.cat([img[0, :, 7, 3], cov[0, :, 7, 3]]))
    assert torch.equal(vals[0, 1], torch.cat([img[0, :, 0, 31], cov[0, :, 0, 31]]))
    xy = torch.zeros(1, 2, 2, dtype=torch.float64) + torch.tensor([120_000.0, 1_020_000.0], dtype=torch.float64)
    with torch.no_grad():
        before = model.query(enc, pix, xy).logits["soil_order"]
        enc.pixels[0, :, 7, 3] += 3.0  # only the stage-0 input of the first point changes
        after = model.query(enc, pix, xy).logits["soil_order"]
    assert not torch.allclose(before[0, 0], after[0, 0]) and torch.equal(before[0, 1], after[0, 1])


def test_pixel_skip_can_be_switched_off() -> None:
    model = MisoModel(small_cfg(liif=LiifConfig(hidden=32, pixel_skip=False)), BOUNDS)
    assert model.pixel is None
    assert model.encode(torch.randn(1, 5, 32, 32), torch.randn(1, 2, 32, 32)).pixels is None
    assert parameter_count(model) < parameter_count(MisoModel(small_cfg(), BOUNDS))


def test_pixel_head_reads_only_the_query_pixels_bands_and_leaves_predictions_alone() -> None:
    """The auxiliary pixel heads answer from the pixel skip alone (changing another pixel or the
    context leaves them); the main logits are the same model's with or without them."""
    torch.manual_seed(0)
    plain = MisoModel(small_cfg(), BOUNDS).eval()
    torch.manual_seed(0)
    aux = MisoModel(small_cfg(loss=LossConfig(pixel_head=0.5)), BOUNDS).eval()
    assert plain.pixel_heads is None and set(aux.pixel_heads.heads) == {"permafrost", "soil_order"}
    assert all(torch.equal(v, aux.state_dict()[k]) for k, v in plain.state_dict().items())
    img, cov = torch.randn(1, 5, 32, 32), torch.randn(1, 2, 32, 32)
    pix, xy = torch.tensor([[[3.5, 7.2], [20.5, 20.5]]]), torch.zeros(1, 2, 2, dtype=torch.float64) + 120_000.0
    with torch.no_grad():
        a, b = plain(img, cov, pix, xy), aux(img, cov, pix, xy)
        assert a.pixel_logits is None and torch.equal(a.logits["soil_order"], b.logits["soil_order"])
        img2 = img.clone()
        img2[0, :, 20:, 20:] += 5.0  # the second point's pixel and the context change, not the first's
        c = aux(img2, cov, pix, xy)
    assert torch.equal(b.pixel_logits["soil_order"][0, 0], c.pixel_logits["soil_order"][0, 0])
    assert not torch.equal(b.pixel_logits["soil_order"][0, 1], c.pixel_logits["soil_order"][0, 1])
    assert not torch.equal(b.logits["soil_order"][0, 0], c.logits["soil_order"][0, 0])
    with pytest.raises(ValueError, match="pixel_skip"):
        small_cfg(loss=LossConfig(pixel_head=0.5), liif=LiifConfig(hidden=32, pixel_skip=False))


def test_clamped_bands_read_values_beyond_the_training_range_as_its_edge() -> None:
    """With clamp bounds, a pixel colder than anything trained on gives the same answer as the
    coldest pixel trained on; nodata stays nodata (the band mean); without bounds it differs."""
    cov_cfg = dict(bands=["elevation", "slope"], embed_dim=16, low=[100.0, 0.0], high=[900.0, 30.0])
    clamped = MisoModel(small_cfg(covariates=EncoderConfig(**cov_cfg)), BOUNDS).eval()
    norm = clamped.cov_norm
    x = torch.tensor([[50.0, 5.0], [100.0, 5.0], [float("nan"), 45.0], [500.0, 30.0]]).T.reshape(1, 2, 1, 4)
    out = norm(x)[0, :, 0]
    assert torch.equal(out[:, 0], out[:, 1]) and out[0, 2] == 0.0 and out[1, 2] == out[1, 3]
    free = MisoModel(small_cfg(covariates=EncoderConfig(bands=["elevation", "slope"], embed_dim=16)), BOUNDS)
    assert not torch.equal(free.cov_norm(x)[0, :, 0, 0], free.cov_norm(x)[0, :, 0, 1])
    assert "cov_norm.low" not in clamped.state_dict(), "bounds live in the config, not the weights"
    with pytest.raises(ValueError, match="go together"):
        EncoderConfig(bands=["a"], low=[0.0])
