"""The base of every spec model, and the storage options that input, output and model
sources share. Pydantic only: `pipeline.spec` and every kind's task spec
(`pipeline/kinds/`) build on it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SpecModel(BaseModel):
    """A part of the job spec: unknown keys are refused, values frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageOptions(SpecModel):
    """Filesystem options for object storage. Credentials are never taken here:
    they come from the usual AWS/GCP chain (environment, profile, instance role)."""

    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000"
    )
    region: str | None = Field(None, description="Object-storage region")
    anon: bool = Field(False, description="Anonymous (unsigned) access, for public buckets")
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Most seconds one object may take, connects, reads and retries together: an "
        "input file past it becomes a read_failed row, an output write past it fails the run. "
        "The first contact with the storage is bounded by the smaller of this and 30 s",
    )
