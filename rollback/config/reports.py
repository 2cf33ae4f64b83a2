"""Config section for the scheduled metrics reports."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReportsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    out_dir: str = "reports-out"
    s3_prefix: str | None = None
    timezone: str = "UTC"
    days: int = Field(default=30, gt=0)
