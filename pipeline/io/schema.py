"""The record and reject schemas, read from the packaged *.features.json (never inferred from data).

They are Hugging Face `datasets` Features, so the Arrow schema carries the metadata that makes
`datasets` decode the `image` column as images; the schema version is added to the metadata.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pyarrow as pa

from pipeline.domain.data import data_file


@cache
def _spec(name: str) -> dict:
    return json.loads(schema_file(name).read_text())


@cache
def arrow_schema(name: str) -> pa.Schema:
    """`record` or `reject` as an Arrow schema with HF features and fea_schema_version metadata."""
    from datasets import Features

    spec = _spec(name)
    schema = Features.from_dict(spec["features"]).arrow_schema
    metadata = dict(schema.metadata or {})
    metadata[b"fea_schema_version"] = spec["schema_version"].encode()
    return schema.with_metadata(metadata)


def schema_version(name: str = "record") -> str:
    return _spec(name)["schema_version"]


def schema_file(name: str) -> Path:
    return data_file(f"{name}.features.json")
