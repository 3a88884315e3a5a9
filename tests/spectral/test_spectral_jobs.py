"""train-spectral and embed-spectra end to end: models, report, bad input, dask (local and
dask-gateway), resumability after SIGKILL with byte-identical results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

from misomap.cli import app
from misomap.config import RunConfig, config_from_dict
from misomap.jobs.embed_spectra import embed_spectra
from misomap.jobs.train_spectral import spectral_run, train_spectral
from misomap.spectral.prepare import prepare
from misomap.spectral.limesoda import evaluate_limesoda, plan_limesoda, run_limesoda
from misomap.spectral.embed import EmbeddingOutputError, embed_chunk, make_plan, open_output
from misomap.spectral.store import load_models
from misomap.jobs.verify import verify
from misomap.spectra.config import AxisSpec, SpectralConfig
from misomap.spectra.errors import (MissingPropertyError, SampleIdMismatchError, SpectralError, SpectralGridError,
                                    SpectralValueError)
from misomap.spectra.library import SensorSpectra, SpectralLibrary, write_library
from misomap.spectra.synthetic import synthetic_library
from tests.support.spectral_helpers import MIR_AXIS, NIR_AXIS, PROPS, small_config, small_library

FEATURES = {"mir", "mir_embedding", "nir", "nir_to_mir_embedding", "nir_to_mir_spectra"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("spectral-train")
    cfg = small_config(work, synthetic={"n_samples": 120, "nir_fraction": 0.5, "repeats": 2})
    return cfg, train_spectral(cfg)


def _with(cfg: RunConfig, **spectral) -> RunConfig:
    data = cfg.model_dump(mode="json")
    data["spectral"].update(spectral)
    return config_from_dict(data)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(url: str) -> dict[str, bytes]:
    return {**{f"z/{k}": v for k, v in _files(Path(url)).items()},
            **{f"p/{k}": v for k, v in _files(Path(url + ".progress")).items()}}


def test_train_writes_models_report_and_every_metric(trained):
    cfg, result = trained
    models = Path(result.models)
    assert {p.name for p in models.iterdir()} == {"mir_vae.safetensors", "nir_encoder.safetensors",
                                                  "mir_regressor.skops", "nir_regressor.skops", "spectral_model.json"}
    table = result.metrics
    assert set(table.features) == FEATURES and set(table.model) == {"plsr"}
    assert set(table.split) == {"cv", "test"} and set(table.property) == set(PROPS)
    assert len(table) == len(FEATURES) * 1 * 2 * len(PROPS)
    assert {"r2", "rmse", "bias", "rpiq", "ccc"} <= set(table.columns)
    test = table[(table.split == "test") & (table.features == "mir") & (table.model == "plsr")].set_index("property")
    assert test.loc["inorganic_c", "ccc"] > 0.6 and test.loc["clay", "ccc"] > 0.5   # held-out samples
    report = result.report
    for name in ("report.md", "metrics.csv", "pred_vs_obs_mir_test.png", "pred_vs_obs_nir_test.png",
                 "reconstructions.png", "latent_space.png"):
        assert (report / name).stat().st_size > 0, name
    assert "Independent test set" in (report / "report.md").read_text()


def _write_variant(path: Path, lib: SpectralLibrary) -> str:
    write_library(lib, str(path))
    return str(path)


def test_train_refuses_a_library_missing_a_property(tmp_path):
    lib = small_library(40)
    keep = [i for i, n in enumerate(lib.property_names) if n != "clay"]
    lib = SpectralLibrary(lib.sensors, lib.sample_id, lib.properties[:, keep],
                          tuple(lib.property_names[i] for i in keep))
    cfg = small_config(tmp_path, library=_write_variant(tmp_path / "lib.zarr", lib))
    with pytest.raises(MissingPropertyError, match=r"\['clay'\]"):
        train_spectral(cfg)


def test_train_refuses_nir_ids_that_do_not_match_mir(tmp_path):
    lib = small_library(40)
    nir = lib.sensors["nir"]
    ids = nir.sample_id.copy()
    ids[0] = "not-in-mir"
    lib = SpectralLibrary({**lib.sensors, "nir": SensorSpectra(ids, nir.axis, nir.values, nir.quantity, nir.unit)},
                          lib.sample_id, lib.properties, lib.property_names)
    cfg = small_config(tmp_path, library=_write_variant(tmp_path / "lib.zarr", lib))
    with pytest.raises(SampleIdMismatchError, match="not-in-mir"):
        train_spectral(cfg)


def test_train_refuses_nan_spectra(tmp_path):
    lib = small_library(40)
    lib.sensors["mir"].values[7, 0, 3] = np.nan
    cfg = small_config(tmp_path, library=_write_variant(tmp_path / "lib.zarr", lib))
    with pytest.raises(SpectralValueError, match="syn-0000007"):
        train_spectral(cfg)


def test_train_needs_a_spectral_section():
    with pytest.raises(SpectralError, match="no 'spectral:' section"):
        train_spectral(RunConfig())


def _write_config(path: Path, cfg: RunConfig) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    return path


def test_embed_cli_local_cluster_matches_in_process_model_and_rerun_is_a_noop(trained, tmp_path):
    cfg, _ = trained
    cfg = _with(cfg, embeddings=str(tmp_path / "emb.zarr"))
    result = CliRunner().invoke(app, ["embed-spectra", "--config", str(_write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    assert "chunks run 8/8" in result.output
    out = zarr.open_group(str(tmp_path / "emb.zarr"), mode="r")
    assert out["embedding"].shape == (120, 8) and out["predictions"].shape == (120, len(PROPS))
    assert out["predictions"].attrs["properties"] == list(PROPS)
    lower, pred, upper = out["predictions_lower"][:], out["predictions"][:], out["predictions_upper"][:]
    assert out["predictions_lower"].attrs["method"] == "CV+" and out["predictions_upper"].attrs["coverage"] == 0.9
    assert np.isfinite(lower).all() and np.isfinite(upper).all() and (lower <= upper).all()
    assert np.mean((lower <= pred) & (pred <= upper)) > 0.9   # CV+ bounds come from the fold models, not the full one
    # the worker's output equals running the same chunk function here
    models, meta = load_models(spectral_run(cfg))
    plan = make_plan(spectral_run(_with(cfg, embeddings=str(tmp_path / "again.zarr"))), models, meta)
    open_output(plan, meta)
    embed_chunk(plan.chunks()[3], plan)
    again = zarr.open_group(str(tmp_path / "again.zarr"), mode="r")
    np.testing.assert_array_equal(again["embedding"][48:64], out["embedding"][48:64])
    np.testing.assert_array_equal(again["predictions_upper"][48:64], out["predictions_upper"][48:64])
    assert np.isfinite(out["embedding"][:]).all()
    before = _outputs(str(tmp_path / "emb.zarr"))
    summary = embed_spectra(cfg)
    assert summary.chunks_run == 0 and _outputs(str(tmp_path / "emb.zarr")) == before


def test_embed_nir_writes_converted_mir_spectra(trained, tmp_path):
    cfg, _ = trained
    cfg = _with(cfg, embeddings=str(tmp_path / "nir.zarr"), embed_sensor="nir")
    summary = embed_spectra(cfg)
    out = zarr.open_group(summary.output, mode="r")
    assert summary.rows == 60
    assert out["converted_mir"].shape == (60, MIR_AXIS.size) and out["converted_mir"].attrs["unit"] == "cm-1"
    assert np.isfinite(out["converted_mir"][:]).all() and np.isfinite(out["predictions"][:]).all()
    assert str(out["sample_id"][0]).startswith("syn-")


def test_embed_through_dask_gateway_equals_local(trained, tmp_path, gateway_server, monkeypatch):
    cfg, _ = trained
    monkeypatch.setenv("MISOMAP_GATEWAY_PASSWORD", gateway_server.password)
    local = embed_spectra(_with(cfg, embeddings=str(tmp_path / "local.zarr")))
    data = _with(cfg, embeddings=str(tmp_path / "gw.zarr")).model_dump(mode="json")
    data["gateway"] = {"address": gateway_server.address, "workers": 1}
    remote = embed_spectra(config_from_dict(data))
    assert remote.chunks_run == local.chunks_run == 8
    assert _outputs(remote.output) == _outputs(local.output)


def test_embed_killed_then_rerun_is_byte_identical(trained, tmp_path):
    cfg, _ = trained
    big = synthetic_library(240, 0.3, 1, MIR_AXIS, NIR_AXIS, seed=9)
    lib_url = _write_variant(tmp_path / "big.zarr", big)
    reference = embed_spectra(_with(cfg, library=lib_url, chunk_size=4, embeddings=str(tmp_path / "ref.zarr")))
    killed_cfg = _with(cfg, library=lib_url, chunk_size=4, embeddings=str(tmp_path / "run.zarr"))
    config = _write_config(tmp_path / "run.yaml", killed_cfg)
    progress = tmp_path / "run.zarr.progress"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "misomap"), "embed-spectra", "--config", str(config)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(progress.glob("*.json"))) < 3:
            assert proc.poll() is None, f"embed job ended (code {proc.returncode}) before it could be killed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_at_kill = len(list(progress.glob("*.json")))
    assert 3 <= done_at_kill < reference.chunks_total, (done_at_kill, reference.chunks_total)
    # a killed store carries no complete mark: `verify` says it is not whole, and why
    killed = verify(str(tmp_path / "run.zarr"))
    assert not killed.complete_mark and not killed.whole and any("missing chunk" in p for p in killed.problems)
    rerun = embed_spectra(killed_cfg)
    assert rerun.chunks_run == reference.chunks_total - done_at_kill
    assert _outputs(rerun.output) == _outputs(reference.output)
    assert verify(rerun.output).whole and verify(reference.output).complete_mark


def test_embed_resamples_another_grid_and_refuses_one_that_does_not_cover(trained, tmp_path):
    cfg, _ = trained
    models, meta = load_models(spectral_run(cfg))
    fine = synthetic_library(32, 0.5, 1, AxisSpec(start=590, stop=4010, step=4), NIR_AXIS, seed=4)
    same = synthetic_library(32, 0.5, 1, MIR_AXIS, NIR_AXIS, seed=4)
    embeddings = []
    for name, lib in (("fine", fine), ("same", same)):
        plan = make_plan(spectral_run(_with(cfg, library=_write_variant(tmp_path / f"{name}.zarr", lib), chunk_size=32,
                               embeddings=str(tmp_path / f"{name}-emb.zarr"))), models, meta)
        open_output(plan, meta)
        embed_chunk(plan.chunks()[0], plan)
        embeddings.append(zarr.open_group(plan.output, mode="r")["embedding"][:])
    assert np.corrcoef(embeddings[0].ravel(), embeddings[1].ravel())[0, 1] > 0.9
    narrow = synthetic_library(32, 0.5, 1, AxisSpec(start=700, stop=4000, step=4), NIR_AXIS, seed=4)
    plan = make_plan(spectral_run(_with(cfg, library=_write_variant(tmp_path / "narrow.zarr", narrow), chunk_size=32,
                           embeddings=str(tmp_path / "narrow-emb.zarr"))), models, meta)
    with pytest.raises(SpectralGridError, match="700..4000"):
        embed_chunk(plan.chunks()[0], plan)


def test_embed_chunk_with_nan_names_chunk_and_sample(trained, tmp_path):
    cfg, _ = trained
    models, meta = load_models(spectral_run(cfg))
    lib = small_library(40)
    lib.sensors["mir"].values[21, 1, 5] = np.nan
    plan = make_plan(spectral_run(_with(cfg, library=_write_variant(tmp_path / "lib.zarr", lib), chunk_size=16,
                           embeddings=str(tmp_path / "e.zarr"))), models, meta)
    with pytest.raises(SpectralValueError, match=r"chunk 1.*syn-0000021"):
        embed_chunk(plan.chunks()[1], plan)


def test_embed_refuses_an_output_from_another_run(trained, tmp_path):
    cfg, _ = trained
    first = _with(cfg, embeddings=str(tmp_path / "e.zarr"), chunk_size=60)
    embed_spectra(first)
    with pytest.raises(EmbeddingOutputError, match="another run"):
        embed_spectra(_with(first, chunk_size=30))


@pytest.mark.slow
def test_limesoda_embeddings_vs_plsr_on_own_folds():
    sc = SpectralConfig(vae={"epochs": 5, "min_steps": 300, "hidden": [64, 32], "latent_dim": 8},
                        limesoda=("SSP.460",), pls_max_components=10, limesoda_step=8)
    table, pools = evaluate_limesoda(sc, seed=0)
    assert set(table.features) == {"spectra", "vae_fold", "vae_cross"} and (table.n == 460).all()
    assert pools.donors.tolist() == [4]                  # the vis-NIR sets covering 85% of its range
    plsr = table[(table.features == "spectra") & (table.model == "plsr")].set_index("property")
    assert plsr.loc["clay", "r2"] > 0.5          # vis-NIR predicts clay well out of fold


@pytest.fixture
def no_training(monkeypatch):
    """Any VAE training fails the test: bad input must be refused before training starts."""
    from misomap.models.spectral import vae

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the inputs were checked")

    monkeypatch.setattr(vae, "fit_vae", refuse)
    monkeypatch.setattr(vae, "train_vae", refuse)


def _drop_nir(lib: SpectralLibrary) -> SpectralLibrary:
    return SpectralLibrary({"mir": lib.sensors["mir"]}, lib.sample_id, lib.properties, lib.property_names)


def test_bad_inputs_are_refused_before_any_training(tmp_path, no_training):
    lib = _drop_nir(small_library(40))
    mir = lib.sensors["mir"]
    ids = mir.sample_id.copy()
    ids[5] = ids[4]
    dup = SpectralLibrary({"mir": SensorSpectra(ids, mir.axis, mir.values, mir.quantity, mir.unit)},
                          lib.sample_id, lib.properties, lib.property_names)
    with pytest.raises(SampleIdMismatchError, match="syn-0000004"):
        train_spectral(small_config(tmp_path, library=_write_variant(tmp_path / "dup.zarr", dup)))
    one = SpectralLibrary({"mir": mir.take(np.array([0]))}, lib.sample_id, lib.properties, lib.property_names)
    with pytest.raises(SpectralValueError, match="1 sample in the library but at least 10"):
        train_spectral(small_config(tmp_path, library=_write_variant(tmp_path / "one.zarr", one)))
    far = SpectralLibrary({"mir": SensorSpectra(mir.sample_id, mir.axis + 5000, mir.values, mir.quantity, mir.unit)},
                          lib.sample_id, lib.properties, lib.property_names)
    with pytest.raises(SpectralGridError, match="no usable overlap"):
        train_spectral(small_config(tmp_path, library=_write_variant(tmp_path / "far.zarr", far)))
    good = _write_variant(tmp_path / "good.zarr", lib)
    with pytest.raises(SpectralError, match=r"\['NOPE.1'\] carry no spectra"):
        train_spectral(small_config(tmp_path, library=good, limesoda=["NOPE.1"]))
    pre = SpectralLibrary({"mir": mir.take(np.array([3]))}, lib.sample_id, lib.properties, lib.property_names)
    with pytest.raises(SpectralValueError, match="a library of one sample"):
        train_spectral(small_config(tmp_path, library=good,
                                    pretrain_library=_write_variant(tmp_path / "pre1.zarr", pre)))


def test_an_instrument_range_narrower_than_the_model_axis_is_used(tmp_path):
    """A range like LimeSoDa NRW.115 (549.6..3799 cm-1): the model axis becomes the intersection."""
    lib = _drop_nir(synthetic_library(60, 0.5, 1, AxisSpec(start=549.6, stop=3799.2, step=1.928), NIR_AXIS, seed=2))
    cfg = small_config(tmp_path, library=_write_variant(tmp_path / "nrw.zarr", lib))
    result = train_spectral(cfg)
    _, meta = load_models(spectral_run(cfg))
    assert meta["mir_axis"] == {"start": 600.0, "stop": 3784.0, "step": 16.0}
    assert set(result.metrics.features) == {"mir", "mir_embedding"}
    summary = embed_spectra(_with(cfg, embeddings=str(tmp_path / "e.zarr"), local_processes=False))
    assert summary.rows == 60


def test_limesoda_cross_set_pretraining_never_sees_the_test_fold(monkeypatch):
    from misomap.models.spectral import vae

    calls = []
    real, real_encoder = vae.fit_vae, vae.fit_encoder

    def record(scans, rows, arch, schedule, init=None):
        calls.append((scans.copy(), init is not None))
        return real(scans, rows, arch, schedule, init=init)

    def record_encoder(scans, rows, arch, schedule, *args, **kwargs):   # the PCA-start encoder (a fresh model)
        calls.append((scans.copy(), False))
        return real_encoder(scans, rows, arch, schedule, *args, **kwargs)

    monkeypatch.setattr(vae, "fit_vae", record)
    monkeypatch.setattr(vae, "fit_encoder", record_encoder)
    sc = SpectralConfig(vae={"epochs": 1, "min_steps": 4, "finetune_steps": 2, "hidden": [16], "latent_dim": 4},
                        regressors=("plsr",), pls_max_components=3, limesoda=("O.32",), limesoda_step=16)
    plan = plan_limesoda(("O.32",), sc)
    pool = plan.pools["O.32"]
    assert set(pool.donors) == {"H.138", "NRW.115", "NRW.42", "NRW.62"}
    assert (pool.axis.start, pool.axis.stop) == (760.0, 3784.0)
    table, pretraining = run_limesoda(plan, sc, seed=0)
    assert pretraining.pool_spectra.tolist() == [138 + 115 + 42 + 62]
    own = plan.own["O.32"].means
    target = prepare(plan.sets["O.32"].spectra, "O.32", pool.axis).means
    folds = plan.sets["O.32"].folds

    def rows_of(reference, scans):
        seen = {r.tobytes() for r in scans}
        return {i for i, r in enumerate(reference) if r.tobytes() in seen}

    base, per_fold = calls[0], calls[1:]
    assert not base[1] and rows_of(target, base[0]) == set(), "the pool alone: no O.32 spectrum"
    assert len(per_fold) == 2 * len(np.unique(folds))
    for k, fold in enumerate(np.unique(folds)):
        (fold_scans, fold_init), (cross_scans, cross_init) = per_fold[2 * k], per_fold[2 * k + 1]
        train = set(np.nonzero(folds != fold)[0].tolist())
        assert not fold_init and rows_of(own, fold_scans) == train
        assert cross_init and rows_of(target, cross_scans) == train
        assert len(cross_scans) == 357 + len(train)
    assert set(table.features) == {"spectra", "vae_fold", "vae_cross"} and (table.n == 32).all()


def test_pretraining_library_larger_than_memory_streams_chunk_by_chunk(tmp_path, monkeypatch):
    import misomap.spectral.training as job

    reads = []
    real = job.read_sensor

    def counted(group, sensor, start=0, stop=None):
        reads.append((start, stop))
        return real(group, sensor, start, stop)

    monkeypatch.setattr(job, "read_sensor", counted)
    unlabelled = synthetic_library(96, 0.5, 2, MIR_AXIS, NIR_AXIS, seed=11)
    unlabelled = SpectralLibrary({"mir": unlabelled.sensors["mir"]}, unlabelled.sample_id[:0],
                                 unlabelled.properties[:0, :0], ())
    write_library(unlabelled, str(tmp_path / "pre.zarr"), chunk_rows=16)
    cfg = small_config(tmp_path, synthetic={"n_samples": 40, "nir_fraction": 0.5, "repeats": 2},
                       pretrain_library=str(tmp_path / "pre.zarr"),
                       vae={"epochs": 10, "min_steps": 0, "hidden": [64, 32], "latent_dim": 8, "stream_above_mb": 0.01})
    result = train_spectral(cfg)
    assert reads and all(stop - start <= 16 for start, stop in reads), "one chunk in memory at a time"
    assert len(reads) == 6 * (1 + 10), "a checking pass, then every chunk once per epoch"
    _, meta = load_models(spectral_run(cfg))
    assert meta["pretrain_library"] == str(tmp_path / "pre.zarr") and meta["vae_final_loss"] < 0.8
    assert "mir_embedding" in set(result.metrics.features)


@pytest.mark.parametrize("name", ["mir_vae.safetensors", "mir_regressor.skops"])
def test_embed_refuses_a_truncated_model_file_by_name(trained, tmp_path, name):
    cfg, _ = trained
    models, meta = load_models(cfg)
    models[name] = models[name][: len(models[name]) // 3]
    with pytest.raises(SpectralError, match=rf"model file .*{name} cannot be loaded.*train-spectral"):
        make_plan(_with(cfg, embeddings=str(tmp_path / "e.zarr")), models, meta)
