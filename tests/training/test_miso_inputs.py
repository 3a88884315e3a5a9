"""What the training wing derives from the training table for each model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from misomap.models.miso.config import EncoderConfig, MisoConfig
from misomap.training.miso_inputs import BIG, MisoJobError, clip_to_pedons


def _cfg(clip: str) -> MisoConfig:
    return MisoConfig(imagery=EncoderConfig(bands=["red", "nir"]),
                      covariates=EncoderConfig(bands=["jan_min_temp", "slope"], clip=clip))


def test_clamp_bounds_are_the_range_at_the_training_pedons_only() -> None:
    table = pd.DataFrame({"jan_min_temp": [-30.0, -22.0, np.nan, -41.0], "slope": [np.nan] * 4,
                          "red": [0.1, 0.2, 0.3, 0.4], "nir": [0.5, 0.6, 0.7, 0.8]})
    train = np.array([True, True, True, False])  # the coldest pedon is in the test fold
    cfg = clip_to_pedons(_cfg("training"), table[train])
    assert cfg.covariates.low == [-30.0, -BIG] and cfg.covariates.high == [-22.0, BIG]
    assert cfg.imagery.low is None, "only encoders that ask for it are clamped"
    assert clip_to_pedons(_cfg("none"), table) == _cfg("none")
    with pytest.raises(MisoJobError, match="lacks band"):
        clip_to_pedons(_cfg("training"), table.drop(columns="slope"))
