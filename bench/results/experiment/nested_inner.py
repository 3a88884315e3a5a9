"""Nested (inner) validation of one design candidate on the #13 experiment's seed folders
(/tmp/exp14): region scheme first, then DBSCAN; one parquet per seed and scheme."""
import sys, time, logging, yaml
from pathlib import Path
from misomap.config import config_from_dict
from misomap.core.log import setup_logging
from misomap.evaluation.scores import model_dir
from misomap.jobs.train_miso import context
from misomap.labels.pedons import write_parquet
from misomap.labels.training_table import read_training
from misomap.training.miso_cv import variant_config
from misomap.training.miso_design import inner_validate, variant_name
from misomap.training.miso_inputs import load_arrays

if __name__ == "__main__":
    setup_logging()
    log = logging.getLogger("inner")
    variant = sys.argv[1]
    for scheme in ("region", "dbscan_256m"):
        for k in (0, 1, 2):
            d = yaml.safe_load(Path(f"/tmp/exp14/seed{k}/run.yaml").read_text())
            d["miso"]["train"]["threads"] = 1
            d["miso"]["schemes"] = [scheme]
            d["miso"]["design"] = {"candidates": ["miso", "no_location"]}
            config = config_from_dict(d, f"seed {k}")
            cfg = config.miso
            out = f"{model_dir(config.workdir, variant_name(variant))}/inner_{scheme}.parquet"
            if Path(out).exists():
                continue
            t0 = time.perf_counter()
            table, folds = read_training(config.workdir, config.storage)
            arrays = load_arrays(config.cube_location(), config.storage, cfg)
            inner = inner_validate(context(config), variant_config(cfg, variant), variant_name(variant),
                                   cfg.design, arrays, table, folds)
            write_parquet(out, inner, config.storage)
            log.info("seed %d %s %s: %d inner folds in %.0f s", k, scheme, variant, len(inner), time.perf_counter() - t0)
