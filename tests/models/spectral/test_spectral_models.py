"""Spectral models on held-out synthetic samples: VAE, NIR->MIR encoder, regressors, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misomap.spectral.training import prepare
from misomap.models.spectral import metrics as m
from misomap.models.spectral.nir import NIRArch, fit_nir_encoder, nir_from_arch, nir_to_mir
from misomap.models.spectral.regressors import (TRUSTED_TYPES, CVPlusRegressor, PropertyRegressor, ilr, ilr_inverse,
                                                regressor_from_bytes, regressor_to_bytes)
from misomap.models.spectral.serialization import load_state, module_to_bytes, read_metadata
from misomap.models.spectral.vae import Schedule, VAEArch, embed, fit_vae, reconstruct, vae_from_arch
from misomap.spectra.errors import SpectralError
from misomap.spectra.library import pair_rows
from tests.support.spectral_helpers import MIR_AXIS, NIR_AXIS, small_library

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained():
    lib = small_library(160, seed=2, nir_fraction=0.6)
    mir = prepare(lib.sensors["mir"], "mir", MIR_AXIS)
    nir = prepare(lib.sensors["nir"], "nir", NIR_AXIS)
    train, test = np.arange(120), np.arange(120, 160)
    keep = np.isin(mir.scan_rows, train)
    vae, hist = fit_vae(mir.scans[keep], mir.scan_rows[keep], VAEArch(mir.scans.shape[1], 8, (64, 32)),
                        Schedule(epochs=120, batch_size=32, learning_rate=2e-3, beta=1e-3))
    return lib, mir, nir, vae, hist, train, test


def test_vae_reconstructs_held_out_spectra_better_than_the_mean(trained):
    lib, mir, _, vae, hist, train, test = trained
    assert hist[-1] < 0.5 * hist[0]
    recon = reconstruct(vae, mir.means[test])
    err = np.mean((recon - mir.means[test]) ** 2)
    baseline = np.mean((mir.means[train].mean(0) - mir.means[test]) ** 2)
    assert err < 0.3 * baseline, (err, baseline)
    assert embed(vae, mir.means[test]).shape == (40, 8)


def test_vae_safetensors_roundtrip_gives_identical_embeddings(trained):
    _, mir, _, vae, _, _, test = trained
    blob = module_to_bytes(vae, "mir_vae", {"n_channels": vae.arch.n_channels, "latent_dim": 8, "hidden": [64, 32]})
    kind, arch = read_metadata(blob)
    back = load_state(vae_from_arch(arch), blob)
    assert kind == "mir_vae" and blob[8:200].find(b"pickle") == -1
    np.testing.assert_array_equal(embed(back, mir.means[test]), embed(vae, mir.means[test]))
    with pytest.raises(SpectralError, match="metadata"):
        read_metadata(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")


def test_nir_encoder_converts_held_out_nir_into_mir(trained):
    lib, mir, nir, vae, _, train, test = trained
    pair = pair_rows(mir.ids, nir.ids)
    ntrain, ntest = np.nonzero(np.isin(pair, train))[0], np.nonzero(np.isin(pair, test))[0]
    keep = np.isin(nir.scan_rows, ntrain)
    enc, hist = fit_nir_encoder(nir.scans[keep], mir.means[pair[nir.scan_rows[keep]]], vae,
                                NIRArch(nir.scans.shape[1], 8, (64, 32)),
                                Schedule(epochs=150, batch_size=32, learning_rate=2e-3))
    assert all(not p.requires_grad for p in vae.parameters()), "the MIR VAE stays frozen"
    z, converted = nir_to_mir(enc, vae, nir.means[ntest])
    z_mir = embed(vae, mir.means[pair[ntest]])
    z_base = embed(vae, mir.means[pair[ntrain]]).mean(0)
    assert np.mean((z - z_mir) ** 2) < 0.7 * np.mean((z_base - z_mir) ** 2)
    truth = mir.means[pair[ntest]]
    assert np.mean((converted - truth) ** 2) < 0.5 * np.mean((mir.means[pair[ntrain]].mean(0) - truth) ** 2)
    blob = module_to_bytes(enc, "nir_encoder", {"n_channels": enc.arch.n_channels, "latent_dim": 8, "hidden": [64, 32]})
    back = load_state(nir_from_arch(read_metadata(blob)[1]), blob)
    np.testing.assert_array_equal(nir_to_mir(back, vae, nir.means[ntest])[1], converted)


def test_regressors_predict_held_out_properties_and_persist_with_skops(trained):
    lib, mir, _, vae, _, train, test = trained
    Y = lib.targets(("inorganic_c", "clay"), mir.ids)
    Y[5, 1] = np.nan                                   # an unmeasured property is skipped, not fatal
    for X in (mir.means, embed(vae, mir.means)):
        model = PropertyRegressor("plsr", max_components=10).fit(X[train], Y[train])
        pred = model.predict(X[test])
        assert m.r2(Y[test, 0], pred[:, 0]) > 0.6 and m.r2(Y[test, 1], pred[:, 1]) > 0.5
        back = regressor_from_bytes(regressor_to_bytes(model))
        np.testing.assert_array_equal(back.predict(X[test]), pred)
    mlp = PropertyRegressor("mlp").fit(mir.means[train], Y[train])
    assert m.r2(Y[test, 1], mlp.predict(mir.means[test])[:, 1]) > 0.3


def test_regressor_loader_refuses_other_objects():
    import skops.io as sio
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(SpectralError, match="PropertyRegressor"):
        regressor_from_bytes(sio.dumps(StandardScaler()))
    with pytest.raises(SpectralError, match="only 2 measured rows"):
        PropertyRegressor("plsr").fit(np.ones((6, 3)), np.array([1, 2, np.nan, np.nan, np.nan, np.nan]))


def test_metrics_against_hand_computed_values():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert m.r2(t, t) == 1 and m.ccc(t, t) == pytest.approx(1) and m.bias(t, t) == 0
    p = t + 1
    assert m.bias(t, p) == 1 and m.rmse(t, p) == 1
    assert m.rpiq(t, p) == pytest.approx(2.0)                  # IQR 4-2 over RMSE 1
    # Lin: 2 cov / (var_t + var_p + (mean diff)^2) = 2*2 / (2 + 2 + 1)
    assert m.ccc(t, p) == pytest.approx(0.8)
    assert m.r2(t, p) == pytest.approx(1 - 5 / 10)
    table = m.metrics_table(np.stack([t, t], 1), np.stack([p, [np.nan, 2, 3, 4, 5]], 1), ["a", "b"], model="x")
    assert table["n"].tolist() == [5, 4] and table.loc[1, "r2"] == 1 and set(table.model) == {"x"}


class Foreign:
    """A type no regressor file should carry."""


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer. Maximum iterations:sklearn.exceptions.ConvergenceWarning")
def test_regressor_allow_list_is_exact_and_refuses_anything_else():  # tiny fits: only their types matter
    import skops.io as sio

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 6)), rng.uniform(1, 5, size=(40, 2))
    needed = set()
    for kind in ("plsr", "ridge", "mlp"):
        needed |= set(sio.get_untrusted_types(data=regressor_to_bytes(PropertyRegressor(kind, max_components=4).fit(X, Y))))
        needed |= set(sio.get_untrusted_types(data=regressor_to_bytes(
            CVPlusRegressor(kind, max_components=4, folds=2).fit(X, Y))))
    assert needed == set(TRUSTED_TYPES), "the allow-list holds exactly what misomap regressors need"
    model = PropertyRegressor("plsr", max_components=4).fit(X, Y)
    model.extra_ = Foreign()
    with pytest.raises(SpectralError, match=r"untrusted types \['(tests\.models\.spectral\.)?test_spectral_models\.Foreign'\]"):
        regressor_from_bytes(regressor_to_bytes(model), "bad.skops")
    with pytest.raises(SpectralError, match="not a readable skops"):
        regressor_from_bytes(b"not a zip", "junk.skops")


def test_texture_is_predicted_as_a_composition_and_log_is_chosen_on_fitting_rows():
    rng = np.random.default_rng(3)
    n = 120
    texture = rng.dirichlet([2, 3, 4], n) * 100
    skewed = rng.lognormal(0, 1.2, n)
    X = np.column_stack([np.log(texture), np.log(skewed), rng.normal(size=(n, 4))])
    Y = np.column_stack([skewed, texture])
    np.testing.assert_allclose(ilr_inverse(ilr(texture)), texture, rtol=1e-9)
    model = PropertyRegressor("plsr", max_components=6, composition=(1, 2, 3)).fit(X[:90], Y[:90])
    pred = model.predict(X[90:])
    np.testing.assert_allclose(pred[:, 1:].sum(axis=1), 100, rtol=1e-9)
    assert (pred[:, 1:] > 0).all() and m.ccc(Y[90:, 1], pred[:, 1]) > 0.8
    assert model.log_columns_ == (0,)
    calm = PropertyRegressor("plsr", max_components=6).fit(X[:90], np.column_stack([np.log(skewed), texture])[:90])
    assert calm.log_columns_ == (), "a symmetric target is not log-transformed"


def test_fine_tuning_keeps_the_pretrained_standardisation_and_lowers_loss_on_new_spectra(trained):
    lib, mir, _, vae, _, train, test = trained
    keep = np.isin(mir.scan_rows, test)
    tuned, hist = fit_vae(mir.scans[keep], mir.scan_rows[keep], vae.arch,
                          Schedule(epochs=20, batch_size=16, learning_rate=1e-3, beta=1e-3), init=vae)
    assert torch.equal(tuned.mean, vae.mean) and torch.equal(tuned.scale, vae.scale)
    assert not torch.equal(tuned.decoder[0].weight, vae.decoder[0].weight), "a copy was trained"
    before = np.mean((reconstruct(vae, mir.means[test]) - mir.means[test]) ** 2)
    after = np.mean((reconstruct(tuned, mir.means[test]) - mir.means[test]) ** 2)
    assert after < before
