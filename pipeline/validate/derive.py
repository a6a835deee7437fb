"""Derived columns: what the suite checks about conversations, AU vectors and images, as plain columns.

GX expresses column invariants; a conversation's turn count, its `<image>` tokens, the roles' order,
the length and range of each AU vector are computed here once per row so the suite can state them as
ordinary column expectations (the packaged expectation suite, fea_record_suite.json).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

IMAGE_TOKEN = "<image>"
CONVERSATION_COLUMNS = ("n_turns", "n_image_tokens", "image_in_first_turn", "first_role", "last_role",
                        "roles_alternate", "n_empty_turns")


def derive(table: pa.Table, shard_split: str, nested_as_arrow: bool = False) -> pd.DataFrame:
    """Rows as pandas plus the derived columns the suite expects. `nested_as_arrow`: list and struct
    columns as pandas ArrowDtype columns instead of Python objects."""
    frame = table.to_pandas(types_mapper=_arrow_if_nested if nested_as_arrow else None)
    n = table.num_rows
    frame["shard_split"] = shard_split
    convs = table.column("conversations").to_pylist() if "conversations" in table.column_names else [None] * n
    stats = [conversation_stats(c) for c in convs]
    for i, col in enumerate(CONVERSATION_COLUMNS):
        frame[col] = [s[i] for s in stats]
    au = table.column("au_intensity").to_pylist() if "au_intensity" in table.column_names else [None] * n
    frame["au_intensity_len"] = pd.array([None if v is None else len(v) for v in au], dtype="Int64")
    frame["au_intensity_min"] = [min(v) if v and None not in v else None for v in au]
    frame["au_intensity_max"] = [max(v) if v and None not in v else None for v in au]
    frame["au_intensity_min"] = frame["au_intensity_min"].astype("float64")
    frame["au_intensity_max"] = frame["au_intensity_max"].astype("float64")
    for col in ("au_model_intensity", "au_label_intensity"):
        values = table.column(col).to_pylist() if col in table.column_names else [None] * n
        frame[f"{col}_len"] = pd.array([None if v is None else len(v) for v in values], dtype="Int64")
        # au_label_intensity holds null for AUs the corpus does not code: range over the coded ones.
        coded = [None if v is None else [x for x in v if x is not None] for v in values]
        frame[f"{col}_min"] = pd.array([min(v) if v else None for v in coded], dtype="Float64").astype("float64")
        frame[f"{col}_max"] = pd.array([max(v) if v else None for v in coded], dtype="Float64").astype("float64")
    blend = table.column("blendshapes").to_pylist() if "blendshapes" in table.column_names else [None] * n
    frame["blendshapes_len"] = pd.array([None if v is None else len(v) for v in blend], dtype="Int64")
    return frame


def _arrow_if_nested(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    return pd.ArrowDtype(arrow_type) if pa.types.is_nested(arrow_type) else None


def conversation_stats(conv: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    """The values of CONVERSATION_COLUMNS for one conversation."""
    if not conv:
        return (0, 0, False, None, None, False, 0)
    roles = [t.get("role") for t in conv]
    contents = [t.get("content") or "" for t in conv]
    tokens = sum(c.count(IMAGE_TOKEN) for c in contents)
    alternate = all(r in ("user", "assistant") for r in roles) and all(
        a != b for a, b in zip(roles, roles[1:], strict=False)
    )
    empty = sum(1 for c in contents if not c.strip())
    return (len(conv), tokens, IMAGE_TOKEN in contents[0], roles[0], roles[-1], alternate, empty)
