"""After inner.py: per seed, the design choice (record_design), the chosen design's final model,
both maps against the truth (plus the full model's map when another design was chosen); then the
experiment tables over /tmp/exp14."""
import sys, time, logging, yaml
from pathlib import Path
import pandas as pd
from misomap.config import config_from_dict
from misomap.core.log import setup_logging
from misomap.evaluation.comparison import compare
from misomap.evaluation.map_truth import map_vs_truth
from misomap.evaluation.scores import model_dir
from misomap.jobs.experiment import write_tables
from misomap.jobs.predict import run_predict, with_map
from misomap.jobs.train_miso import context, record_design
from misomap.labels.pedons import write_parquet
from misomap.labels.training_table import read_training
from misomap.mapping.chunk import zarr_url
from misomap.models.miso.config import ABLATIONS
from misomap.training.miso_cv import train_final, variant_config
from misomap.training.miso_design import variant_name
from misomap.training.miso_inputs import load_arrays

E = Path("/tmp/exp14")
if __name__ == "__main__":
    setup_logging()
    log = logging.getLogger("finish")
    for k in (0, 1, 2):
        out = E / f"seed{k}"
        d = yaml.safe_load((out / "run.yaml").read_text())
        d["miso"]["design"] = {"candidates": ["miso", "no_location"]}
        d["miso"]["train"]["threads"] = 2
        config = config_from_dict(d, f"seed {k}")
        cfg = config.miso
        table, folds = read_training(config.workdir, config.storage)
        names = [variant_name(c) for c in cfg.design.candidates]
        inner = []
        for n in names:
            part = pd.concat([pd.read_parquet(f"{model_dir(config.workdir, n)}/inner_{s}.parquet")
                              for s in ("region", "dbscan_256m")], ignore_index=True)
            write_parquet(f"{model_dir(config.workdir, n)}/inner.parquet", part, config.storage)
            inner.append(part)
        frames = {n: pd.read_parquet(f"{model_dir(config.workdir, n)}/predictions.parquet") for n in names}
        variant, _, _ = record_design(config, cfg.design, pd.concat(inner, ignore_index=True), frames, table)
        compare(config.workdir, config.storage, config.evaluation,
                ["rf", "miso", "miso_selected", *[f"miso_{a}" for a in ABLATIONS]])
        t0 = time.perf_counter()
        arrays = load_arrays(config.cube_location(), config.storage, cfg)
        final = train_final(context(config), variant_config(cfg, variant), arrays, table, variant_name(variant))
        log.info("seed %d: map model %s, final in %.0f s", k, variant, time.perf_counter() - t0)
        maps = [("rf", str(out / "models" / "rf"))]
        if variant != "miso":  # the full model's map too, first: the chosen design's map is left on disk
            maps.append(("miso_full", str(out / "models/miso/final/model.safetensors")))
        maps.append(("miso", final))
        truth = []
        for model, path in maps:
            c = with_map(config, "miso" if model.startswith("miso") else model, path)
            run_predict(c, overwrite=True)
            truth.append(map_vs_truth(zarr_url(c.map), out / "world").assign(model=model))
        pd.concat(truth).to_csv(out / "map_truth.csv", index=False)
    print(write_tables(E, [0, 1, 2], sys.argv[1]))
