"""A release as training data: load a split with `datasets`, turn a row into chat messages.

Rows carry `conversations` ([{role, content}], the literal `<image>` once in the first user turn).
Models differ in how an image is marked in the prompt, so the literal is removed here and the image
becomes a `{"type": "image"}` content item that the model's own chat template renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

IMAGE_LITERAL = "<image>"
COLUMNS = ["sample_id", "image", "conversations", "emotion", "au_present", "task"]


def _shards(build_dir: str, split: str) -> list[Path]:
    from pipeline.io.build_dir import BuildDir

    build = BuildDir(build_dir)
    files = build.shards(split)
    if not files:
        raise FileNotFoundError(f"{build_dir}: no {split} split (no {build.data_dir}/{split}-*.parquet); "
                                "run `fea build` first")
    return files


def load_split(build_dir: str, split: str = "train", streaming: bool = False,
               limit: int | None = None) -> datasets.Dataset | datasets.IterableDataset:
    """One split of a build as a `datasets.Dataset` (or `IterableDataset` when streaming), images decoded."""
    import datasets

    files = [str(f) for f in _shards(build_dir, split)]  # local paths or URLs: datasets reads both through fsspec
    ds = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=streaming)
    ds = ds.select_columns(COLUMNS)
    if limit:
        ds = ds.take(limit) if streaming else ds.select(range(min(limit, len(ds))))
    return ds


def split_size(build_dir: str, split: str = "train", limit: int | None = None) -> int:
    """How many rows `load_split` gives (from the shards' Parquet footers: a stream has no length of its own)."""
    from pipeline.io.build_dir import BuildDir

    rows = sum(BuildDir.parquet(f).metadata.num_rows for f in _shards(build_dir, split))
    return min(rows, limit) if limit else rows


def to_messages(conversations: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Build turns -> chat messages with list content; the image item replaces `<image>` in the first user turn."""
    messages = []
    for i, turn in enumerate(conversations):
        text = turn["content"]
        content: list[dict[str, Any]] = []
        if i == 0 and IMAGE_LITERAL in text:
            text = text.replace(IMAGE_LITERAL, "", 1).lstrip("\n")
            content.append({"type": "image"})
        content.append({"type": "text", "text": text})
        messages.append({"role": turn["role"], "content": content})
    return messages


def prompt_messages(conversations: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The messages before the first assistant turn: what a model is asked at evaluation."""
    messages = to_messages(conversations)
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    return messages[:first]


def first_answer(conversations: list[dict[str, str]]) -> str:
    """The reference answer: the first assistant turn."""
    return next((t["content"] for t in conversations if t["role"] == "assistant"), "")


def conversation_texts(rows) -> list[str]:
    """All turn texts of some rows (without the image literal), e.g. to build a tokenizer."""
    return [t["content"].replace(IMAGE_LITERAL, "") for row in rows for t in row["conversations"]]
