"""The one run configuration every job takes, loadable from YAML: it assembles the sections, each
defined beside the part of the pipeline that reads it, and imports no job.

Secrets never live here: S3 credentials come from the environment or the standard AWS chain,
the gateway password from an environment variable whose *name* the config holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from misomap.core.config_base import GatewayConfig, Location, StacConfig, StorageConfig, StrictModel, overlaps
from misomap.core.errors import ConfigError
from misomap.cube.config import CubeConfig
from misomap.demo.spec import DemoWorldConfig
from misomap.evaluation.config import EvaluationConfig
from misomap.labels.config import FoldsConfig, LabelsConfig
from misomap.mapping.config import MapConfig
from misomap.models.baseline_config import RFConfig
from misomap.models.miso.config import MisoConfig
from misomap.plan.config import PlanConfig
from misomap.publish.config import PublishConfig
from misomap.spectra.config import SpectralConfig


class RunConfig(StrictModel):
    """Everything one run needs; each section belongs to one part of the pipeline."""

    name: str = "misomap-run"
    workdir: Location = "misomap-out"
    seed: int = 0
    storage: StorageConfig = StorageConfig()
    stac: StacConfig = StacConfig()
    gateway: GatewayConfig = GatewayConfig()
    miso: MisoConfig | None = None
    cube: CubeConfig | None = None
    labels: LabelsConfig = LabelsConfig()
    demo_world: DemoWorldConfig = DemoWorldConfig()
    folds: FoldsConfig = FoldsConfig()
    rf: RFConfig = RFConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    map: MapConfig | None = None
    spectral: SpectralConfig | None = None
    plan: PlanConfig = PlanConfig()
    publish: PublishConfig | None = None

    def cube_location(self) -> str:
        """The cube the models read: `labels.cube`, else the cube section's output, else
        <workdir>/cube.zarr."""
        if self.labels.cube:
            return self.labels.cube
        return self.cube.out if self.cube else f"{self.workdir}/cube.zarr"

    @model_validator(mode="after")
    def _inputs_outputs_apart(self) -> RunConfig:
        """No output may lie in (or hold) an input: a write would change what is being read."""
        pairs: list[tuple[str, str, str, str]] = []
        if self.map is not None:
            pairs.append(("map.output", self.map.output, "map.cube", self.map.cube))
            if self.map.model_path:
                pairs.append(("map.output", self.map.output, "map.model_path", self.map.model_path))
        if self.cube is not None:
            pairs.append(("cube.out", self.cube.out, "demo_world.out", self.demo_world.out))
        if self.spectral is not None and self.spectral.library and self.spectral.embeddings:
            pairs.append(("spectral.embeddings", self.spectral.embeddings, "spectral.library",
                          self.spectral.library))
        for out_name, out, in_name, inp in pairs:
            if overlaps(out, inp):
                raise ValueError(f"{out_name} {out!r} overlaps {in_name} {inp!r}: an output may not lie "
                                 "in, hold or equal an input; pick a separate location")
        return self


def _format_errors(err: ValidationError, source: str) -> str:
    """One line: the source, then each bad field and why, separated by '; '."""
    parts = []
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        parts.append(f"{loc}: {msg}")
    return f"invalid run configuration in {source}: " + "; ".join(parts)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a mapping into a RunConfig, raising ConfigError that names each bad field."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path) -> RunConfig:
    """Load and validate a YAML run configuration."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read run configuration {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}): save it as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return config_from_dict(data, source=str(path))
