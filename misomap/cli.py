"""The `misomap` command-line program."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from misomap import __version__
from misomap.config import RunConfig, config_from_dict, load_config
from misomap.core.errors import MisomapError, RedactingFilter, one_line
from misomap.core.log import LEVELS, setup_logging

app = typer.Typer(help="misomap: fine-scale soil and permafrost maps from Zarr datacubes.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
log = logging.getLogger("misomap")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Run configuration (YAML).")]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"misomap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    log_level: Annotated[str, typer.Option("--log-level", help=f"One of {', '.join(LEVELS)}.")] = "INFO",
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """misomap: fine-scale soil and permafrost maps from Zarr datacubes."""
    if log_level.upper() not in LEVELS:
        raise typer.BadParameter(f"--log-level must be one of {LEVELS}, got {log_level!r}")
    setup_logging(log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


def _config(path: Path | None) -> RunConfig:
    return load_config(path) if path else RunConfig()


def run_cli() -> None:
    """Entry point: MisomapError becomes a one-line message and exit code 2, not a traceback; so does
    an OSError (disk full, read-only output, refused access), named by its file."""
    try:
        app()
    except MisomapError as err:
        log.error("%s", one_line(err))
        raise SystemExit(2) from None
    except OSError as err:
        where = f"cannot access {err.filename}" if err.filename else "a read or write failed"
        log.error("%s", one_line(OSError(f"{where}: {err.strerror or err} (check free space, permissions "
                                         "and the paths in the config)")))
        raise SystemExit(2) from None


@app.command("config-check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate a run configuration and print it back resolved (no secrets are ever in it)."""
    cfg = _config(config)
    typer.echo(cfg.model_dump_json(indent=2))


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Print versions, the torch device, and whether configured endpoints answer."""
    from misomap.doctor import run_checks

    checks = run_checks(_config(config))
    for c in checks:
        typer.echo(f"{'ok ' if c.ok else 'BAD'}  {c.name:<14} {c.detail}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Working folder for every demo output.")] = Path("demo-out"),
    seed: Annotated[int, typer.Option(help="Random seed of the demo world.")] = 0,
    size: Annotated[str, typer.Option(help="Demo world size: tiny, demo or bench.")] = "demo",
) -> None:
    """The whole pipeline on the embedded demo region, offline: world, STAC API, cube, RF, MISO, maps."""
    from misomap.jobs.demo import run_demo

    result = run_demo(out, seed=seed, size=size)
    typer.echo(result.summary())


@app.command("demo-world")
def demo_world(
    out: Annotated[Optional[str], typer.Option(help="Folder or s3://bucket/prefix (default: config).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (default: config).")] = None,
    size: Annotated[Optional[str], typer.Option(help="tiny, demo or bench (default: config).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Generate the synthetic Alaska demo world: COGs, a STAC catalog, labels, truth, quicklook."""
    from misomap.demo.world import generate_world

    cfg = _config(config)
    target = out or cfg.demo_world.out
    manifest = generate_world(target, cfg.demo_world.seed if seed is None else seed,
                              size or cfg.demo_world.size, storage=cfg.storage)
    typer.echo(f"demo world '{manifest.size}' (seed {manifest.seed}) written to {target}")


cube_app = typer.Typer(help="Datacube: STAC search -> seasonal composites -> Zarr cube.", no_args_is_help=True)
app.add_typer(cube_app, name="cube")


@cube_app.command("build")
def cube_build(config: Annotated[Path, typer.Option("--config", "-c", help="Run configuration (YAML).")]) -> None:
    """Build (or resume) the cube described by the config's `cube:` section."""
    from misomap.jobs.build_cube import run_build_cube

    result = run_build_cube(load_config(config))
    typer.echo(f"cube: {result.out}  shape {result.shape}  chunks built {result.chunks_built}, "
               f"skipped {result.chunks_skipped} of {result.chunks_total}  quicklook: {result.quicklook}")


@app.command()
def predict(
    config: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option(help="Override map.model: miso, rf or module:factory.")] = None,
    gateway: Annotated[Optional[str], typer.Option(help="dask-gateway URL (password from the env).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing map from another run.")] = False,
) -> None:
    """Predict the map chunk by chunk into Zarr, COGs and STAC; resumable."""
    from misomap.jobs.predict import map_config, run_predict

    cfg = _config(config)
    data = cfg.model_dump()
    if model:
        data["map"] = {**map_config(cfg).model_dump(), "model": model}
    if gateway:
        data["gateway"] = {**data["gateway"], "address": gateway}
    summary = run_predict(config_from_dict(data, "command-line overrides"), overwrite=overwrite)
    typer.echo(f"map: {summary.output}  chunks run {summary.chunks_run}/{summary.chunks_total}  "
               f"pixels {summary.pixels}  time {summary.seconds:.1f} s  "
               f"({summary.pixels_per_second:.0f} px/s)")


@app.command("train-rf")
def train_rf(
    config: ConfigOpt = None,
    rf_map: Annotated[bool, typer.Option("--map/--no-map", help="Also map the cube with the RF.")] = False,
) -> None:
    """Random Forest baseline: training table + shared folds, CV on every scheme, models, report."""
    from misomap.jobs.train_rf import train_rf as run

    cfg = _config(config)
    typer.echo(f"report: {run(cfg).report}")
    if rf_map:
        from misomap.evaluation.scores import model_dir
        from misomap.jobs.predict import run_predict, with_map

        summary = run_predict(with_map(cfg, "rf", model_dir(cfg.workdir, "rf")))
        typer.echo(f"map: {summary.output}")


@app.command()
def evaluate(
    config: ConfigOpt = None,
    model: Annotated[str, typer.Option(help="Model whose models/<model>/predictions.parquet to score.")] = "rf",
) -> None:
    """Regenerate a model's evaluation report from its cross-validated predictions."""
    from misomap.jobs.evaluate import run_evaluation

    typer.echo(f"report: {run_evaluation(_config(config), model)}")


@app.command()
def pretrain(config: ConfigOpt = None) -> None:
    """Pretrain the MISO encoders self-supervised (SimMIM) on unlabelled cube tiles."""
    from misomap.jobs.train_miso import run_pretrain

    for which, loc in run_pretrain(_config(config)).items():
        typer.echo(f"{which}: {loc}")


@app.command("train-miso")
def train_miso(config: ConfigOpt = None) -> None:
    """Cross-validate MISO (and ablations) on the saved folds, compare with the RF, train the final model."""
    from misomap.jobs.train_miso import run_train_miso

    out = run_train_miso(_config(config))
    typer.echo(f"comparison: {out.comparison}")
    for name, loc in out.reports.items():
        typer.echo(f"report {name}: {loc}")
    if out.final_model:
        typer.echo(f"final model: {out.final_model}")


@app.command("choose-map")
def choose_map(config: ConfigOpt = None) -> None:
    """Choose the published map's model per target by nested validation (RF, MISO or their stack)."""
    from misomap.jobs.choose_map import run_choose_map

    out = run_choose_map(_config(config))
    for target, c in out.choice["targets"].items():
        typer.echo(f"{target}: {c['model']} (margin {c['margin']:.3f} over the runner-up)")
    typer.echo(f"report: {out.report}")
    typer.echo(f"map model (map.model auto, map.model_path): {out.model_path}")


@app.command()
def experiment(
    seeds: Annotated[list[int], typer.Option("--seeds", help="World seeds, e.g. --seeds 0 1 2.")],
    more_seeds: Annotated[Optional[list[int]], typer.Argument(help="Further seeds after --seeds.",
                                                              show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder for every world, run and table.")] = Path("experiment-out"),
    size: Annotated[str, typer.Option(help="Demo world size: tiny, demo or bench.")] = "tiny",
    scheme: Annotated[Optional[list[str]], typer.Option(help="MISO fold scheme(s): random, dbscan, blocks, "
                                                        "region (default all; the RF runs all).")] = None,
    max_folds: Annotated[Optional[int], typer.Option(help="MISO: the N largest test folds per scheme.")] = None,
    ablations: Annotated[bool, typer.Option(help="Also cross-validate MISO's ablations.")] = True,
    max_steps: Annotated[Optional[int], typer.Option(help="Cap MISO's training steps (CPU-bound runs).")] = None,
    tables_only: Annotated[bool, typer.Option(help="Only rebuild the tables from the seed folders under --out.")] = False,
    design: Annotated[Optional[list[str]], typer.Option(help="Choose MISO's design among these variants by nested "
                                                        "validation, e.g. --design miso --design no_location.")] = None,
    class_balance: Annotated[float, typer.Option(help="Both models weigh each pedon by its class share to the "
                                                 "power −this (0 none, 0.5 square root, 1 classes alike).")] = 0.0,
) -> None:
    """MISO vs RF over several demo worlds: every scheme, ablations, maps against the truth; one table."""
    from misomap.jobs.experiment import run_experiment

    md = run_experiment(out, list(seeds) + list(more_seeds or []), size, scheme, max_folds, ablations, max_steps,
                        tables_only, design, class_balance)
    typer.echo(f"experiment: {md}")


@app.command("train-spectral")
def train_spectral(config: ConfigOpt = None) -> None:
    """Spectral models: MIR VAE, NIR->MIR encoder, property regressors; saved with a report."""
    from misomap.jobs.train_spectral import train_spectral as run

    result = run(_config(config))
    typer.echo(f"models: {result.models}\nreport: {result.report / 'report.md'}")


@app.command("import-spectra")
def import_spectra(
    out: Annotated[str, typer.Argument(help="New Zarr spectral library (local path or s3://).")],
    mir: Annotated[Optional[Path], typer.Option(help="OSSL-layout MIR table (scan_mir.<cm-1>_abs).")] = None,
    nir: Annotated[Optional[Path], typer.Option(help="NeoSpectra-layout NIR table (scan_nir.<nm>_ref).")] = None,
    visnir: Annotated[Optional[Path], typer.Option(help="OSSL-layout vis-NIR table (scan_visnir.<nm>_ref).")] = None,
    soillab: Annotated[Optional[Path], typer.Option(help="OSSL soil-lab table (properties).")] = None,
    properties: Annotated[str, typer.Option(help="Comma-separated misomap property names.")] = "",
    id_column: Annotated[str, typer.Option(help="Sample key: id.layer_uuid_txt (OSSL) or id.sample_local_c "
                                                 "(NeoSpectra/KSSL).")] = "id.layer_uuid_txt",
    paired: Annotated[bool, typer.Option(help="Keep only NIR samples that have a MIR scan.")] = False,
) -> None:
    """Import OSSL / NeoSpectra / KSSL-layout tables (CSV, CSV.gz, Parquet) into a Zarr spectral library."""
    from misomap.spectral.store import import_library

    tables = {k: str(v) for k, v in (("mir", mir), ("nir", nir), ("visnir", visnir)) if v is not None}
    if not tables:
        raise typer.BadParameter("give at least one of --mir, --nir, --visnir")
    lib = import_library(tables, out, str(soillab) if soillab else None,
                         tuple(p for p in properties.split(",") if p), id_column, paired)
    typer.echo(f"library: {out}  samples {len(lib.sample_id)}  sensors "
               + " ".join(f"{k}={v.values.shape[0]}x{v.values.shape[1]}" for k, v in lib.sensors.items()))


@app.command("embed-spectra")
def embed_spectra(config: ConfigOpt = None) -> None:
    """Embed a spectral library chunk by chunk through dask into Zarr; resumable."""
    from misomap.jobs.embed_spectra import embed_spectra as run

    s = run(_config(config))
    typer.echo(f"embeddings: {s.output}  rows {s.rows}  chunks run {s.chunks_run}/{s.chunks_total}")


@app.command()
def view(
    path: Annotated[Path, typer.Argument(help="A map folder, a folder of maps, or a run's workdir.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (another is taken if it is in use).")] = 8765,
) -> None:
    """Serve maps on loopback for their viewer page and print its URLs; Ctrl-C stops."""
    from misomap.viewer.server import HOST, find_maps, make_server, page_urls

    maps = find_maps(path)
    server = make_server(maps.root, port)
    for url in page_urls(f"http://{HOST}:{server.server_address[1]}", maps):
        typer.echo(f"viewer: {url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def plan(
    config: ConfigOpt = None,
    statewide: Annotated[bool, typer.Option(help="All of Alaska instead of the cube's region.")] = False,
    resolution: Annotated[Optional[list[float]], typer.Option(help="Resolution(s) in m (repeatable); "
                                                              "default: the cube's.")] = None,
) -> None:
    """Print the tile plan: tiles, chunks, pixels, bytes and cost per stage from measured rates."""
    from misomap.jobs.regenerate import plan_report
    from misomap.plan.plan import estimate, format_plan

    cfg = _config(config)
    for name, p in plan_report(cfg, statewide, resolution or []):
        typer.echo(format_plan(name, p, estimate(p, cfg.plan.rates), cfg.plan.rates))


@app.command()
def regenerate(
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the task graph and cost; read nothing.")] = False,
    statewide: Annotated[bool, typer.Option(help="With --dry-run: all of Alaska.")] = False,
) -> None:
    """search -> cube -> predict -> publish over the tile plan; stale chunks only; atomic versions."""
    from misomap.jobs import regenerate as regen
    from misomap.plan.plan import format_plan

    cfg = _config(config)
    if dry_run:
        d = regen.dry_run(cfg, statewide)
        typer.echo(format_plan("dry run", d.plan, d.costs, cfg.plan.rates))
        typer.echo(f"task graph: {len(d.graph):,} tasks, {d.n_edges:,} dependencies "
                   f"(search, {len(d.plan.cube_chunks):,} cube, {len(d.plan.map_chunks):,} predict, publish)")
        return
    s = regen.run_regenerate(cfg)
    for st in s.stages:
        typer.echo(f"{st.name:<8} ran {st.ran:>6}  up to date {st.skipped:>6}  {st.note}")
    typer.echo(f"published: {s.version} ({'new' if s.new_version else 'unchanged'})  {s.seconds:.1f} s")


@app.command()
def verify(
    path: Annotated[str, typer.Argument(help="A cube, a map output folder (or its map.zarr), or embeddings.")],
    config: ConfigOpt = None,
) -> None:
    """Check a store against its completion records and checksums; exit 0 only when it is whole."""
    from misomap.jobs.verify import verify as run

    report = run(path, _config(config).storage)
    for problem in report.problems:
        typer.echo(problem)
    state = "whole" if report.whole else "NOT whole"
    mark = "complete mark present" if report.complete_mark else "no complete mark (unfinished)"
    typer.echo(f"{report.kind} {report.path}: {report.chunks} chunks, {len(report.problems)} problem(s), "
               f"{mark}: {state}")
    if not report.whole:
        raise typer.Exit(1)
