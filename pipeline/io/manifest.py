"""manifest.json of a build: counts that add up (inputs = accepted + rejected), versions, params hash.

`Manifest` is its typed form (pydantic); unknown keys are kept, so an older or newer manifest still
reads. Its counts are taken from the written files (`pipeline.io.accounting`), not from in-flight counters,
so the manifest describes exactly what a reader will find. The
manifest names the build's shards: it is the commit marker of a release, written last, and a reader
takes the files it names (`pipeline.io.build_dir.BuildDir`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Counts(_Open):
    """inputs = accepted_inputs + rejected_inputs; rejected_by_reason adds up to rejected_inputs. (Every build
    writes them all; a reader that needs them checks `model_fields_set`, validation does.)"""

    inputs: int = 0
    accepted_inputs: int = 0
    rejected_inputs: int = 0
    rows: int = 0
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    face_rejects_of_accepted_inputs: dict[str, int] = Field(default_factory=dict)
    reject_rows_by_reason: dict[str, int] | None = None  # None in manifests older than face-level rejects
    faces: int = 0
    rows_by_split: dict[str, int] = Field(default_factory=dict)
    rows_by_task: dict[str, int] = Field(default_factory=dict)
    rows_by_emotion: dict[str, int] = Field(default_factory=dict)
    labelled_inputs_by_emotion: dict[str, int] = Field(default_factory=dict)


class ShardFile(BaseModel):
    """A Parquet file of the build, relative to its root (`data/train-00000-of-00002.parquet`)."""

    path: str
    rows: int


class Resume(BaseModel):
    """How the build's image work was split, and how much of it an earlier, interrupted run had done."""

    shards: int
    shard_size: int
    reused: int


class Manifest(_Open):
    schema_version: str = ""
    created_unix: int = 0
    sources: list[dict[str, Any]] = Field(default_factory=list)
    counts: Counts = Field(default_factory=Counts)
    stage_counters: dict[str, dict[str, int]] = Field(default_factory=dict)
    llm: dict[str, Any] | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    models: dict[str, dict[str, str]] = Field(default_factory=dict)
    au_vocabulary: list[str] = Field(default_factory=list)
    au_intensity_scale: str = ""
    au_head: dict[str, Any] | None = None
    blendshape_names: list[str] = Field(default_factory=list)
    face_measure_names: list[str] = Field(default_factory=list)
    face_measures_version: str | None = None
    au_not_measured: list[str] = Field(default_factory=list)
    crop_size: int | None = None
    splits: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    resume: Resume | None = None
    build_seconds: float = 0.0
    timings_s: dict[str, float] = Field(default_factory=dict)
    # The files of the release; a reader takes these rather than listing the folder (None: an older build).
    shards: list[ShardFile] | None = None
    reject_files: list[ShardFile] | None = None

    def to_json(self) -> str:
        """manifest.json's text; top-level entries that are None are left out (a missing `llm` = no LLM)."""
        data = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        return json.dumps(data, indent=2) + "\n"
