"""The one run configuration every job takes, loadable from YAML.

Secrets never live here: S3 credentials come from the environment or the standard AWS chain,
the gateway password from an environment variable whose *name* the config holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from misomap.config_base import GatewayConfig, Location, StacConfig, StorageConfig, StrictModel
from misomap.cube.config import CubeConfig
from misomap.demo.spec import DemoWorldConfig
from misomap.errors import ConfigError
from misomap.models.miso.config import MisoConfig
from misomap.spectra.config import SpectralConfig
from misomap.jobs.evaluation_config import EvaluationConfig, LabelsConfig
from misomap.models.baseline_config import FoldsConfig, RFConfig
from misomap.jobs.map_config import MapConfig
from misomap.plan.config import PlanConfig
from misomap.publish.config import PublishConfig


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


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid run configuration in {source}:"]
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


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
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read run configuration {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return config_from_dict(data, source=str(path))
