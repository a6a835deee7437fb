"""Export a build's shards to the formats trainers read: LLaVA JSON, ShareGPT JSONL, OpenAI chat JSONL, HF Parquet.

Rows are streamed shard by shard (pyarrow `iter_batches`), never all in memory. The export is written
into a staging folder next to OUTPUT and renamed into place at the end, so OUTPUT is either the previous
export or the complete new one. Nothing time- or path-dependent is written: re-running gives identical bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow.parquet as pq

from pipeline.domain.data import data_file
from pipeline.io.accounting import AccountingError
from pipeline.io.build_dir import BuildDir

IMAGE_LITERAL = "<image>"
FORMATS = ("llava", "sharegpt", "openai", "hf")
IMAGE_MODES = ("copy", "none")
MANIFEST = "export_manifest.json"
BATCH_ROWS = 256
_SPEC = json.loads(data_file("export_formats.json").read_text())
ROLES: dict[str, str] = _SPEC["sharegpt_roles"]
METADATA: list[str] = _SPEC["metadata_columns"]
COLUMNS = sorted({*METADATA, "image", "conversations"})


class ExportError(ValueError):
    """Bad export arguments or a row that the formats cannot represent."""


@dataclass
class Export:
    """One export run: where it writes and what it has written so far."""

    root: Path  # the staging folder
    images: str
    faces_written: set[str] = field(default_factory=set)

    def image_path(self, row: dict[str, Any]) -> str:
        """Relative path of the row's crop; the JPEG is written once per face (content-addressed by face_id)."""
        rel = f"images/{row['face_id']}.jpg"
        if self.images == "copy" and row["face_id"] not in self.faces_written:
            (self.root / "images").mkdir(exist_ok=True)
            (self.root / rel).write_bytes(row["image"]["bytes"])
            self.faces_written.add(row["face_id"])
        return rel


def iter_rows(files: list[Path], limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The export columns of every row of the shards, in shard order, checked."""
    n = 0
    for path in files:
        for batch in BuildDir.parquet(path).iter_batches(batch_size=BATCH_ROWS, columns=COLUMNS):
            for row in batch.to_pylist():
                if limit is not None and n >= limit:
                    return
                check_row(row, path)
                n += 1
                yield row


def check_row(row: dict[str, Any], path: Path) -> None:
    """Every format puts the image before the first user turn's text; refuse rows where that would lie."""
    turns = row["conversations"] or []
    where = f"{path.name}: row {row['sample_id']}"
    if not turns or turns[0]["role"] != "user" or not turns[0]["content"].startswith(IMAGE_LITERAL + "\n"):
        raise ExportError(f"{where}: the first turn is not a user turn starting with '{IMAGE_LITERAL}\\n'")
    if sum(t["content"].count(IMAGE_LITERAL) for t in turns) != 1:
        raise ExportError(f"{where}: '{IMAGE_LITERAL}' must occur exactly once")
    if unknown := {t["role"] for t in turns} - set(ROLES):
        raise ExportError(f"{where}: unknown role(s) {sorted(unknown)}")
    image = row["image"] or {}
    if not (image.get("bytes") or b"").startswith(b"\xff\xd8"):
        raise ExportError(f"{where}: the image is not JPEG bytes")


def metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in METADATA}


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)


# --- one small function per format: a row -> its record ---------------------------------------------------------

def llava_record(row: dict[str, Any], ex: Export) -> dict[str, Any]:
    turns = [{"from": ROLES[t["role"]], "value": t["content"]} for t in row["conversations"]]
    return {"id": row["sample_id"], "image": ex.image_path(row), "conversations": turns, "metadata": metadata(row)}


def sharegpt_record(row: dict[str, Any], ex: Export) -> dict[str, Any]:
    turns = [{"from": ROLES[t["role"]], "value": t["content"]} for t in row["conversations"]]
    return {"conversations": turns, "images": [ex.image_path(row)], **metadata(row)}


def openai_record(row: dict[str, Any], ex: Export) -> dict[str, Any]:
    """The `<image>` literal becomes an image_url part (base64 data URL) where it stood: before the text."""
    url = "data:image/jpeg;base64," + base64.b64encode(row["image"]["bytes"]).decode("ascii")
    messages: list[dict[str, Any]] = []
    for i, t in enumerate(row["conversations"]):
        if i == 0:
            text = t["content"][len(IMAGE_LITERAL) + 1:]
            content: Any = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
        else:
            content = t["content"]
        messages.append({"role": t["role"], "content": content})
    return {"messages": messages}


def hf_record(row: dict[str, Any], ex: Export) -> dict[str, Any]:
    """TRL's vision SFT layout: `messages` with typed content parts and an `images` list (one here)."""
    from pipeline.train.data import to_messages

    messages = [{"role": m["role"], "content": [{"type": c["type"], "text": c.get("text")} for c in m["content"]]}
                for m in to_messages(row["conversations"])]
    image = {"bytes": row["image"]["bytes"], "path": f"{row['face_id']}.jpg"}
    return {"messages": messages, "images": [image], **metadata(row)}


# --- writers: records of one split -> files ---------------------------------------------------------------------

def _write_json_list(records: Iterator[dict[str, Any]], out: TextIO) -> None:
    out.write("[")
    for i, rec in enumerate(records):
        out.write(("," if i else "") + "\n" + _json(rec))
    out.write("\n]\n")


def _write_jsonl(records: Iterator[dict[str, Any]], out: TextIO, sidecar: TextIO | None = None) -> None:
    for rec in records:
        meta = rec.pop("_metadata", None)
        out.write(_json(rec) + "\n")
        if sidecar is not None:
            sidecar.write(_json(meta) + "\n")


def hf_features():
    import datasets

    text = datasets.Value("string")
    return datasets.Features({
        "messages": datasets.List({"role": text, "content": datasets.List({"type": text, "text": text})}),
        "images": datasets.List(datasets.Image()),
        **{k: datasets.List(text) if k == "au_present" else text for k in METADATA},
    })


def _write_hf(records: Iterator[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa

    features = hf_features()
    schema = features.arrow_schema  # carries the `huggingface` metadata, so images decode as images
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for rec in records:
            batch.append(rec)
            if len(batch) == BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


def _count(rows: Iterator[dict[str, Any]], counter: list[int]) -> Iterator[dict[str, Any]]:
    for row in rows:
        counter[0] += 1
        yield row


def export_split(fmt: str, split: str, rows: Iterator[dict[str, Any]], ex: Export) -> list[str]:
    """Write one split in one format; returns the files written (relative to the export root)."""
    root = ex.root
    if fmt == "llava":
        with open(root / f"{split}.json", "w", encoding="utf-8") as out:
            _write_json_list((llava_record(r, ex) for r in rows), out)
        return [f"{split}.json"]
    if fmt == "sharegpt":
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as out:
            _write_jsonl((sharegpt_record(r, ex) for r in rows), out)
        return [f"{split}.jsonl"]
    if fmt == "openai":
        # OpenAI lines hold only `messages`; the labels go to a line-aligned sidecar.
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as out, \
                open(root / f"{split}.metadata.jsonl", "w", encoding="utf-8") as side:
            _write_jsonl(({**openai_record(r, ex), "_metadata": metadata(r)} for r in rows), out, side)
        return [f"{split}.jsonl", f"{split}.metadata.jsonl"]
    (root / "data").mkdir(exist_ok=True)
    name = f"data/{split}-00000-of-00001.parquet"
    _write_hf((hf_record(r, ex) for r in rows), root / name)
    return [name]


def llamafactory_dataset_info(splits: list[str]) -> dict[str, Any]:
    """The dataset_info.json entries that make LLaMA-Factory read the ShareGPT files (dataset_dir = OUTPUT)."""
    return {f"fea_{s}": {"file_name": f"{s}.jsonl", "formatting": "sharegpt",
                         "columns": {"messages": "conversations", "images": "images"},
                         "tags": _SPEC["llamafactory_tags"]} for s in splits}


def _check_output(build_dir: BuildDir, output: Path) -> None:
    if not build_dir.remote:
        build, out = build_dir.root.resolve(), output.resolve()  # resolve(): symlinks cannot smuggle OUTPUT in
        if out == build or build in out.parents or out in build.parents:
            raise ExportError(f"output {output} overlaps the build {build_dir}; choose a folder outside it")
    out = output.resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise FileExistsError(f"{output} exists and is not an earlier export (no {MANIFEST}); not overwriting it")


def export(build_dir: Path | str | BuildDir, fmt: str, output: Path | str, splits: list[str] | None = None,
           images: str = "copy", limit: int | None = None) -> dict[str, Any]:
    """Export the splits of the build at BUILD_DIR (a folder or URL) to the local folder OUTPUT in `fmt`;
    returns the export manifest (also written to OUTPUT)."""
    build_dir, output = BuildDir(build_dir), Path(output)
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if images not in IMAGE_MODES:
        raise ExportError(f"unknown --images {images!r}; choose one of {', '.join(IMAGE_MODES)}")
    if images == "none" and fmt in ("openai", "hf"):
        raise ExportError(f"--images none: the {fmt} format embeds the images in its files")
    if limit is not None and limit < 1:
        raise ExportError(f"--limit must be a positive number of rows, got {limit}")
    source = build_dir.manifest  # NotABuild (a FileNotFoundError) when BUILD_DIR is not a build
    manifest_bytes = build_dir.manifest_bytes()
    available = build_dir.splits()
    splits = splits or available
    if missing := [s for s in splits if s not in available]:
        raise ExportError(f"no split(s) {missing} in {build_dir} (it has {', '.join(available) or 'none'})")
    _check_output(build_dir, output)

    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ex = Export(staging, images)
    counts: dict[str, Any] = {}
    try:
        for split in splits:
            files = build_dir.shards(split)
            in_shards = sum(BuildDir.parquet(f).metadata.num_rows for f in files)
            expected = in_shards if limit is None else min(limit, in_shards)
            counter = [0]
            written = export_split(fmt, split, _count(iter_rows(files, limit), counter), ex)
            if counter[0] != expected:  # the shards' own row counts are the reference
                raise AccountingError(f"{split}: exported {counter[0]} rows, the shards hold {expected}")
            counts[split] = {"rows_in_shards": in_shards, "rows_exported": counter[0], "files": written}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-written is left behind
        raise
    if fmt == "sharegpt":
        (staging / "dataset_info.json").write_text(_json(llamafactory_dataset_info(splits)) + "\n")
    result = {
        "format": fmt,
        "images": "embedded" if fmt in ("openai", "hf") else images,
        "limit": limit,
        "source_build": {
            "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
            "params_hash": source.versions.get("params_hash"),
            "schema_version": source.schema_version,
        },
        "splits": counts,
        "image_files": len(ex.faces_written),
    }
    (staging / MANIFEST).write_text(json.dumps(result, indent=2) + "\n")
    if output.exists():
        shutil.rmtree(output)  # an earlier export (checked above)
    staging.rename(output)
    return result

