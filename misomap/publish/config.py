"""The `publish:` section: where regenerated maps are published and how many versions stay."""

from __future__ import annotations

from pydantic import Field

from misomap.core.config_base import Location, StrictModel


class PublishConfig(StrictModel):
    """Publish root (folder or s3:// prefix readers open) and the number of versions kept."""

    root: Location
    keep: int = Field(3, ge=1)
