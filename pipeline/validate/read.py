"""Reading a build for validation: its manifest, its rows without the image bytes, and a sample of crops.

The rows of every shard (the shards the manifest names, through `BuildDir`) are read into one pandas
frame with the derived columns of `derive.py`; the image column is read a row group at a time for the
byte lengths, and an even spread of `sample_images` crops over the whole build is decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.io.build_dir import BuildDir, ManifestError, NotABuild, shard_split
from pipeline.io.manifest import Manifest
from pipeline.validate.dataset_checks import Check
from pipeline.validate.derive import derive

COUNT_KEYS = ("inputs", "accepted_inputs", "rejected_inputs", "rows")


class BuildReadError(Exception):
    """The build's rows could not be read; the message says which file and why."""


@dataclass
class Rows:
    """The rows of a build as one frame (derived columns added), each shard's Arrow schema, and the image check."""

    frame: pd.DataFrame
    schemas: dict[str, pa.Schema]
    image_checks: list[Check]


def load_manifest(build: BuildDir, checks: list[Check]) -> Manifest | None:
    """The manifest when it is there and has its counts (a `manifest` check says so), else None."""
    try:
        manifest = build.manifest
    except NotABuild:
        checks.append(Check("manifest", False, f"missing {build.manifest_path}"))
        return None
    except (OSError, ManifestError) as exc:
        checks.append(Check("manifest", False, f"unreadable {build.manifest_path}: {exc}"))
        return None
    counts = manifest.counts
    missing = [k for k in COUNT_KEYS if k not in counts.model_fields_set]
    if "counts" not in manifest.model_fields_set or missing:
        checks.append(Check("manifest", False, f"counts missing: {missing}"))
        return None
    checks.append(Check("manifest", True, f"counts: { {k: getattr(counts, k) for k in COUNT_KEYS} }"))
    return manifest


def read_rows(build: BuildDir, sample_images: int, crop_size: int | None, nested_as_arrow: bool = False) -> Rows:
    """Every row of the build with the derived columns, decoding `sample_images` crops spread over them (each
    `crop_size` square when given). Raises BuildReadError when a shard is missing or unreadable."""
    try:
        files = build.shards()
    except OSError as exc:
        raise BuildReadError(f"cannot list {build.data_dir}: {type(exc).__name__}: {exc}") from None
    if not files:
        missing = not build.remote and not build.data_dir.is_dir()
        raise BuildReadError(f"missing data directory: {build.data_dir}" if missing
                             else f"no parquet files in {build.data_dir}")
    try:
        pfiles = {f.name: build.parquet(f) for f in files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
        raise BuildReadError(f"unreadable parquet: {type(exc).__name__}: {exc}") from None

    total = sum(pf.metadata.num_rows for pf in pfiles.values())
    wanted = set(np.linspace(0, total - 1, min(sample_images, total)).astype(int).tolist()) if total else set()
    frames: list[pd.DataFrame] = []
    decoded, undecodable, offset = 0, 0, 0
    problems: list[str] = []
    for name, pf in pfiles.items():
        file_start = offset
        try:
            columns = [c for c in pf.schema_arrow.names if c != "image"]
            table = pf.read(columns=columns)
            frame = derive(table, shard_split(name), nested_as_arrow)
            lengths: list[int | None] = []
            if "image" in pf.schema_arrow.names:
                for group in range(pf.num_row_groups):
                    images = pf.read_row_group(group, columns=["image"]).column("image").combine_chunks()
                    data = images.field("bytes")
                    lengths.extend(pc.binary_length(data).to_pylist())
                    for i in sorted(j - offset for j in wanted if offset <= j < offset + len(data)):
                        decoded += 1
                        problem = decode_problem(data[i].as_py(), crop_size)
                        if problem:
                            undecodable += 1
                            problems.append(f"{name} row {offset + i - file_start}: {problem}")
                    offset += len(data)
            else:
                lengths = [None] * table.num_rows
                offset += table.num_rows
                problems.append(f"{name}: no image column")
            frame["image_bytes_len"] = pd.array(lengths, dtype="Int64")
        except Exception as exc:  # noqa: BLE001
            raise BuildReadError(f"unreadable parquet {name}: {type(exc).__name__}: {exc}") from None
        frames.append(frame)

    size_note = f" at {crop_size}x{crop_size}" if crop_size else ""
    detail = f"{decoded - undecodable}/{decoded} sampled images decode{size_note}"
    if problems:
        detail += "; " + "; ".join(problems[:5])
    image_check = Check("images_decode", decoded > 0 and not problems, detail)
    return Rows(pd.concat(frames, ignore_index=True), {n: pf.schema_arrow for n, pf in pfiles.items()}, [image_check])


def decode_problem(data: bytes | None, crop_size: int | None) -> str | None:
    """Why these image bytes are not a crop of the build (None: they decode, at the expected size)."""
    from PIL import Image

    if not data:
        return "no image bytes"
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            size = img.size
    except Exception as exc:  # noqa: BLE001
        return f"does not decode ({type(exc).__name__}: {exc})"
    if crop_size and size != (crop_size, crop_size):
        return f"size {size[0]}x{size[1]}, expected {crop_size}x{crop_size}"
    return None
