"""The candidates' table of `map.model: auto`, per demo world: each candidate's mean inner score
(what chose), its held-out figures on the outer test folds (what the choice was worth), and the maps
against the world's truth rasters.

    .venv/bin/python bench/auto_candidates.py /tmp/demo0 /tmp/demo7 [--results bench/results/auto]

Each argument is a `misomap demo --out DIR` folder past its map choice (maps not yet finished are
left out of the map columns). Held-out figures of every candidate,
the stack included, come from the same procedure `choose-map` scores (a test fold's stack fitted on
its training part's inner predictions only); `auto` is the procedure itself (misomap.training.auto).
Writes candidates.csv and candidates.md under --results.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from misomap.core.config_base import StorageConfig
from misomap.evaluation.summary import map_figures
from misomap.labels.pedons import TARGETS
from misomap.labels.training_table import read_training
from misomap.training.auto import KEYS, auto_predictions, macro_recall


def held_out(preds: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per target: macro recall (the criterion) and accuracy, mean over the test folds."""
    out = {}
    for target in TARGETS:
        sub = preds[preds["target"] == target]
        per_fold = [(macro_recall(p["y_true"].to_numpy(), p["y_pred"].to_numpy()),
                     float((p["y_true"] == p["y_pred"]).mean())) for _, p in sub.groupby("fold")]
        out[target] = {"held-out macro recall": sum(r for r, _ in per_fold) / len(per_fold),
                       "held-out accuracy": sum(a for _, a in per_fold) / len(per_fold)}
    return out


def world_table(folder: Path) -> pd.DataFrame:
    """One demo folder's rows: target × candidate."""
    auto_dir = folder / "models" / "auto"
    record = json.loads((auto_dir / "auto.json").read_text())
    seed = json.loads((folder / "world" / "world.json").read_text())["seed"]
    scores = pd.read_csv(auto_dir / "inner_scores.csv")
    inner = pd.read_parquet(auto_dir / "inner_predictions.parquet")
    _, folds = read_training(str(folder), StorageConfig())
    folds = folds.assign(pedon_id=folds["pedon_id"].astype(str))
    outer = pd.concat([pd.read_parquet(folder / "models" / m / "predictions.parquet").assign(model=m)
                       for m in ("rf", "miso")], ignore_index=True)
    outer = outer.assign(pedon_id=outer["pedon_id"].astype(str), y_true=outer["y_true"].astype(str))
    per_fold = pd.DataFrame(record["folds"])
    preds = {"auto": pd.read_parquet(auto_dir / "predictions.parquet")}
    for cand in ("rf", "miso", "stack"):  # every candidate through the same procedure, forced
        preds[cand], _ = auto_predictions(per_fold.assign(chosen=cand), inner, outer, folds, int(seed))
    done = {m: folder / "maps" / m / "stac" for m in ("rf", "miso", "auto")}  # STAC is written last
    maps = map_figures({m: str(folder / "maps" / m / "map.zarr") for m, stac in done.items() if stac.exists()},
                       str(folder / "world"))
    inner_mean = (scores[scores["scheme"] == record["scheme"]].groupby(KEYS + ["candidate"])["score"].mean()
                  .groupby(["target", "candidate"]).mean())
    rows = []
    for cand, p in preds.items():
        ho = held_out(p)
        for target in TARGETS:
            c = record["targets"][target]
            chosen = c["model"]
            row = {"seed": seed, "target": target, "candidate": cand,
                   "inner score": float(inner_mean.get((target, chosen if cand == "auto" else cand), float("nan"))),
                   **ho[target]}
            if cand == "auto":
                row["chosen"] = f"{chosen} (margin {c['margin']:+.3f})"
            m = maps.get(cand)
            if m is not None:
                row["map acc"] = m["map PF acc"] if target == "permafrost" else m["map SO acc"]
                if target == "soil_order":
                    row["map macro F1"] = m["map SO F1"]
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table, floats to 3 decimals, blanks for missing values."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|---" * len(frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--results", type=Path, default=Path("bench/results/auto"))
    args = ap.parse_args()
    table = pd.concat([world_table(f) for f in args.folders], ignore_index=True)
    args.results.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.results / "candidates.csv", index=False)
    cols = [c for c in ("seed", "target", "candidate", "inner score", "held-out macro recall",
                        "held-out accuracy", "map acc", "map macro F1", "chosen") if c in table.columns]
    md = markdown(table[cols].sort_values(["seed", "target", "candidate"]))
    (args.results / "candidates.md").write_text("# `map.model: auto`: the candidates per demo world\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
