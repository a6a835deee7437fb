"""Deterministic train/test splits that never put one subject (or one video) in two splits."""

from __future__ import annotations

import hashlib

from pipeline.domain.record import Sample


def unit_hash(key: str) -> float:
    """A key's stable position in [0, 1): the same on every machine and every run."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / float(1 << 48)


def split_for(key: str, ratios: dict[str, float], seed: int) -> str:
    """Map a grouping key to a split by a seeded hash: same key, same split, on every machine."""
    h = unit_hash(f"{seed}|{key}")
    acc = 0.0
    names = sorted(ratios)
    for name in names:
        acc += ratios[name]
        if h < acc:
            return name
    return names[-1]


def grouping_key(sample: Sample) -> str:
    """Subject when known; else the video (its frames stay together); else the image content."""
    item = sample.item
    if item.subject_id:
        return f"subject:{item.source}:{item.subject_id}"
    if item.frame_index is not None:
        return f"video:{item.source}:{item.source_item}"
    return f"image:{sample.image_sha256}"


def assign_split(sample: Sample, ratios: dict[str, float], seed: int) -> str:
    """The corpus' official split wins; otherwise the hashed split of the grouping key (params `split`)."""
    return sample.item.split or split_for(grouping_key(sample), ratios, seed)
