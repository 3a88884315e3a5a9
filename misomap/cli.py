"""The `misomap` command-line program."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from misomap import __version__
from misomap.config import RunConfig, config_from_dict, load_config
from misomap.core.errors import ConfigError, MisomapError, RedactingFilter, one_line, redact
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
    an OSError (disk full, read-only output, refused access), named by its file, and an object
    store's client error (endpoint down, no credentials), named by its endpoint. Anything else is a
    bug: one redacted line, exit 1, the redacted traceback at --log-level DEBUG."""
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
    except Exception as err:  # noqa: BLE001 - the last line of defence: no raw traceback, no secret
        if type(err).__module__.split(".")[0] in ("botocore", "aiobotocore", "s3fs"):
            log.error("object store: %s (check storage.endpoint_url, the bucket and AWS credentials)",
                      one_line(err))
            raise SystemExit(2) from None
        log.debug("unexpected error", exc_info=True)
        log.error("unexpected %s: %s (a bug: rerun with --log-level DEBUG for the traceback and report it)",
                  type(err).__name__, one_line(err))
        raise SystemExit(1) from None


@app.command()
def init(
    area: Annotated[str, typer.Option(help="west,south,east,north (lon/lat degrees) or a .geojson file.")],
    catalog: Annotated[str, typer.Option(help="earth-search or planetary-computer.")],
    out: Annotated[Path, typer.Option(help="The run configuration to write (YAML).")] = Path("run.yaml"),
    resolution: Annotated[float, typer.Option(help="Cube pixel size in m: 10 or 30.")] = 10.0,
    years: Annotated[str, typer.Option(help="Summers to composite, YYYY or YYYY-YYYY.")] = "2019-2024",
    workdir: Annotated[str, typer.Option(help="Run folder or s3://bucket/prefix for every output.")] = "misomap-out",
    stac_url: Annotated[Optional[str], typer.Option(help="Another STAC API serving the catalog's collections "
                                                    "(a mirror); default the catalog's public URL.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (default from --out).")] = None,
    chunk: Annotated[Optional[int], typer.Option(help="Chunk side in px (default: sized for this machine).")] = None,
    check: Annotated[bool, typer.Option(help="Search the catalog now for every source (network).")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Write a complete, commented run configuration for your area on a public STAC catalog."""
    from misomap.jobs.init import run_init

    r = run_init(area, catalog, out, resolution, years, workdir, stac_url, name, check, force, chunk=chunk)
    typer.echo(f"wrote {r.out}: {r.grid.crs} {r.grid.resolution:g} m, bounds {list(r.grid.bounds)}, "
               f"chunk {r.sizing.chunk}, workers {r.sizing.workers}"
               + (f"; items found: {r.searched}" if r.searched else ""))


@app.command("import-pedons")
def import_pedons(
    files: Annotated[list[Path], typer.Argument(help="Pedon table(s): CSV, JSON records or (Geo)Parquet.")],
    layout: Annotated[str, typer.Option(help="kssl (Lab Data Mart lab_combine_nasis_ncss [+ lab_layer]), "
                                        "miso (reference point data) or table (--columns).")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Run configuration (area, grid, labels.pedons).")],
    columns: Annotated[Optional[str], typer.Option(help="table layout: misomap=column pairs, e.g. "
                                                   "pedon_id=site,x=lon,y=lat,soil_order=order,permafrost=pf")] = None,
    crs: Annotated[Optional[str], typer.Option(help="CRS of x/y in CSV/JSON input (default EPSG:4326).")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output GeoParquet (default labels.pedons).")] = None,
) -> None:
    """Import pedon tables into the project's pedon GeoParquet, with a report of every dropped or changed row."""
    from misomap.jobs.import_pedons import run_import_pedons

    r = run_import_pedons(load_config(config), [str(f) for f in files], layout, columns, crs, out)
    typer.echo(f"pedons: {r.out}  kept {r.kept} of {r.read} rows  (permafrost {r.permafrost}, soil order "
               f"{r.soil_order})  report: {r.report} ({r.dropped} dropped, {r.changed} changed)")


@app.command("config-check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate a run configuration and print it back resolved (no secrets are ever in it)."""
    cfg = _config(config)
    typer.echo(redact(cfg.model_dump_json(indent=2)))


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Print versions, the torch device, and whether configured endpoints answer."""
    from misomap.doctor import run_checks

    checks = run_checks(_config(config))
    for c in checks:
        typer.echo(redact(f"{'ok ' if c.ok else 'BAD'}  {c.name:<14} {c.detail}"))
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
def cube_build(config: Annotated[Path, typer.Option("--config", "-c", help="Run configuration (YAML).")],
               repair: Annotated[bool, typer.Option(help="First check every recorded chunk against its "
                                                    "record and rebuild those that differ.")] = False) -> None:
    """Build (or resume) the cube described by the config's `cube:` section."""
    from misomap.jobs.build_cube import run_build_cube

    result = run_build_cube(load_config(config), repair=repair)
    typer.echo(f"cube: {result.out}  shape {result.shape}  chunks built {result.chunks_built}, "
               f"skipped {result.chunks_skipped} of {result.chunks_total}  quicklook: {result.quicklook}")


assess_app = typer.Typer(help="Accuracy and area of a map from a labelled probability sample (Olofsson et al. "
                         "2014; Stehman 2014).", no_args_is_help=True)
app.add_typer(assess_app, name="assess")
MapArg = Annotated[str, typer.Argument(help="A map folder (or its map.zarr) made by `misomap predict`.")]
ZonesOpt = Annotated[Optional[str], typer.Option(help="GeoParquet polygons (regions, permafrost zones).")]
ZoneColumnOpt = Annotated[Optional[str], typer.Option(help="The zones' name column (default: the only one).")]


@assess_app.command("sample")
def assess_sample(
    map_path: MapArg,
    n: Annotated[int, typer.Option("--n", help="Number of points.")],
    out: Annotated[str, typer.Option(help="New GeoParquet file for the points.")],
    layer: Annotated[str, typer.Option(help="Class layer to stratify by and label.")] = "permafrost_class",
    design: Annotated[str, typer.Option(help="stratified (by map class), random, or disagreement (--versus).")
                      ] = "stratified",
    allocation: Annotated[str, typer.Option(help="proportional, equal or optimal (Neyman).")] = "proportional",
    min_per_class: Annotated[int, typer.Option(help="At least this many points per stratum (never below 2).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed draws the same points.")] = 0,
    zones: ZonesOpt = None,
    zone_column: ZoneColumnOpt = None,
    versus: Annotated[Optional[str], typer.Option(help="Second map for --design disagreement.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Draw a probability sample of the map's pixels (GeoParquet: stratum, inclusion probability, digest)."""
    from misomap.assess.sampling import SampleSpec
    from misomap.jobs.assess import run_sample

    spec = SampleSpec(n, design, allocation, min_per_class, seed)  # type: ignore[arg-type]
    points, strata = run_sample(map_path, layer, spec, out, zones, zone_column, versus, _config(config).storage)
    typer.echo(f"sample: {out}  {points} points in {strata} strata; add a `label` column (class names) and run "
               "`misomap assess estimate`")


@assess_app.command("estimate")
def assess_estimate(
    map_path: MapArg,
    labels: Annotated[str, typer.Option(help="The labelled sample (or pedons, naive).")],
    out: Annotated[str, typer.Option(help="Folder for estimate.json, report.md and assess.png.")],
    zones: ZonesOpt = None,
    zone_column: ZoneColumnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Overall, user's and producer's accuracy and error-adjusted area per class with 95% intervals."""
    from misomap.jobs.assess import run_estimate

    doc = run_estimate(map_path, labels, out, zones, zone_column, _config(config).storage)
    for name, fig in doc["layers"].items():
        oa, (lo, hi) = fig["overall_accuracy"], fig["overall_accuracy_ci95"]
        typer.echo(f"{name}{' (naive)' if doc['naive'] else ''}: overall accuracy {oa:.3f} [{lo:.3f}, {hi:.3f}]")
    typer.echo(f"report: {out}/report.md")


@assess_app.command("compare")
def assess_compare(
    map_a: MapArg,
    map_b: Annotated[str, typer.Argument(help="The second map (same grid).")],
    labels: Annotated[str, typer.Option(help="Labelled sample drawn for MAP_A, MAP_B or their disagreement.")],
    out: Annotated[Optional[str], typer.Option(help="Folder for compare.json.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Which map is more accurate: the accuracy difference with a CI and McNemar's exact test."""
    from misomap.jobs.assess import run_compare

    for line in run_compare(map_a, map_b, labels, out, _config(config).storage):
        typer.echo(line)


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


@app.command()
def embed(
    config: ConfigOpt = None,
    model_path: Annotated[Optional[str], typer.Option(help="MISO checkpoint (default: map.model_path).")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder (default: <workdir>/embeddings/miso).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Discard existing embeddings from another input.")] = False,
) -> None:
    """Per-pixel MISO embeddings (its heads' input) as a Zarr cube on the cube's grid; resumable."""
    from misomap.jobs.embed import run_embed

    s = run_embed(_config(config), model_path, out, overwrite)
    typer.echo(f"embeddings: {s.output}  chunks run {s.chunks_run}/{s.chunks_total}  pixels {s.pixels}  "
               f"time {s.seconds:.1f} s ({s.pixels_per_second:.0f} px/s)  {s.bytes_per_pixel:.1f} bytes/px")


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
def train_miso(
    config: ConfigOpt = None,
    miso_map: Annotated[bool, typer.Option("--map/--no-map", help="Also map the cube with the final model.")] = False,
) -> None:
    """Cross-validate MISO (and ablations) on the saved folds, compare with the RF, train the final model."""
    from misomap.jobs.train_miso import run_train_miso

    cfg = _config(config)
    out = run_train_miso(cfg)
    typer.echo(f"comparison: {out.comparison}")
    for name, loc in out.reports.items():
        typer.echo(f"report {name}: {loc}")
    if out.final_model:
        typer.echo(f"final model: {out.final_model}")
    if miso_map:
        if not out.final_model:
            raise typer.BadParameter("--map needs miso.final_model: true (no final model was trained)")
        from misomap.jobs.predict import run_predict, with_map

        typer.echo(f"map: {run_predict(with_map(cfg, 'miso', out.final_model)).output}")


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
    if statewide and not dry_run:
        raise ConfigError("--statewide only goes with --dry-run: a statewide regeneration maps the region of the "
                          "config (set cube.area: alaska)")
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
