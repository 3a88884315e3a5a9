"""MISO's design chosen by nested validation: the choice per test fold and for the map follows the
inner scores only, and the selected predictions are the chosen candidate's, fold by fold."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from misomap.models.miso.config import DesignConfig
from misomap.training.miso_design import choose, selected_predictions
from misomap.training.miso_inputs import MisoJobError

DESIGN = DesignConfig(candidates=["miso", "no_location"], map_scheme="region")


def _inner(rows: list[tuple[str, str, int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model", "scheme", "fold", "inner_fold", "score"])


def test_each_fold_takes_the_best_mean_inner_score_and_the_map_its_scheme() -> None:
    inner = _inner([
        # region fold 0: miso (0.6 + 0.8) / 2 = 0.70 > no_location 0.65
        ("miso", "region", 0, 1, 0.6), ("miso", "region", 0, 2, 0.8),
        ("miso_no_location", "region", 0, 1, 0.7), ("miso_no_location", "region", 0, 2, 0.6),
        # region fold 1: no_location wins
        ("miso", "region", 1, 0, 0.5), ("miso_no_location", "region", 1, 0, 0.9),
        # dbscan fold 0: a tie goes to the earlier candidate
        ("miso", "dbscan", 0, 1, 0.7), ("miso_no_location", "dbscan", 0, 1, 0.7),
        # dbscan fold 1: no_location by far; it must not decide the map (dbscan is not map_scheme)
        ("miso", "dbscan", 1, 0, 0.1), ("miso_no_location", "dbscan", 1, 0, 0.9),
    ])
    per_fold, map_model = choose(inner, DESIGN)
    chosen = per_fold.set_index(["scheme", "fold"])["chosen"].to_dict()
    assert chosen == {("region", 0): "miso", ("region", 1): "miso_no_location",
                      ("dbscan", 0): "miso", ("dbscan", 1): "miso_no_location"}
    # the map: region means miso (0.70 + 0.5) / 2 = 0.60 < no_location (0.65 + 0.9) / 2 = 0.775
    assert map_model == "no_location"
    flipped = inner.assign(score=inner["score"].where(inner["scheme"] != "region", 1 - inner["score"]))
    assert choose(flipped, DESIGN)[1] == "miso"


def test_selected_predictions_are_the_chosen_candidates_fold_by_fold() -> None:
    per_fold = pd.DataFrame({"scheme": ["region", "region"], "fold": [0, 1],
                             "chosen": ["miso", "miso_no_location"]})

    def preds(tag: str) -> pd.DataFrame:
        return pd.DataFrame({"pedon_id": ["a", "b", "c", "d"], "scheme": "region", "fold": [0, 0, 1, 1],
                             "source": tag})

    out = selected_predictions(per_fold, {"miso": preds("full"), "miso_no_location": preds("nl")})
    assert out.set_index("pedon_id")["source"].to_dict() == {"a": "full", "b": "full", "c": "nl", "d": "nl"}
    assert out.set_index("pedon_id")["candidate"].to_dict()["c"] == "miso_no_location"


def test_bad_design_requests_are_named() -> None:
    with pytest.raises(ValidationError, match="repeats a candidate"):
        DesignConfig(candidates=["miso", "miso"])
    with pytest.raises(ValidationError, match="at least 2"):
        DesignConfig(candidates=["miso"])
    with pytest.raises(ValidationError):
        DesignConfig(candidates=["miso", "no_such_variant"])
    inner = _inner([("miso", "region", 0, 1, 0.5)])
    with pytest.raises(MisoJobError, match=r"no inner validation of design candidate\(s\) \['miso_no_location'\]"):
        choose(inner, DESIGN)
    both = _inner([("miso", "dbscan", 0, 1, 0.5), ("miso_no_location", "dbscan", 0, 1, 0.4)])
    with pytest.raises(MisoJobError, match="map_scheme 'region' is not among the schemes"):
        choose(both, DESIGN)
