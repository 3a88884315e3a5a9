"""Models are compared on the same held-out folds and the same pedons."""

from __future__ import annotations

import pandas as pd

from misomap.evaluation.comparison import common_folds


def _preds(rows: list[tuple[str, int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["scheme", "fold", "target", "pedon_id"]).assign(y_true="1", y_pred="1")


def test_common_folds_keeps_the_folds_and_pedons_every_model_predicted() -> None:
    rf = _preds([("region", 0, "permafrost", "a"), ("region", 0, "permafrost", "b"),
                 ("region", 1, "permafrost", "c"), ("region", 0, "soil_order", "a"),
                 ("random", 0, "permafrost", "a")])
    miso = _preds([("region", 0, "permafrost", "a"), ("region", 0, "soil_order", "a"),
                   ("region", 0, "soil_order", "b")])  # left out b for permafrost, never ran fold 1
    models = {"rf": (rf, "rf.parquet"), "miso": (miso, "miso.parquet")}
    got = common_folds(rf, models)
    region = got[got["scheme"] == "region"]
    assert sorted(zip(region["fold"], region["target"], region["pedon_id"])) == [
        (0, "permafrost", "a"), (0, "soil_order", "a")]
    assert list(got.loc[got["scheme"] == "random", "pedon_id"]) == ["a"], "a scheme only the RF ran stays"
    again = common_folds(miso, models)
    assert sorted(zip(again["target"], again["pedon_id"])) == [("permafrost", "a"), ("soil_order", "a")]
