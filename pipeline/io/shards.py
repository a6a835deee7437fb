"""The image work of a build, in deterministic shards that each leave a completion marker.

As in DataTrove: the inputs are split, in their enumeration order, into shards of `runner.shard_size`.
A worker runs the image stages (decode to synergy) over one shard, writes the shard's outcome (its faces
and its rejects) and then its marker. A build that stopped is rerun into the same staging folder: a shard
whose marker carries the same fingerprint (the build's key and the shard's own inputs) is read back
instead of being computed again. Dedup, render, verify and the rows always run over every shard, so a
resumed build ends with the rows of an uninterrupted one.

Files, in `<staging>/_work/` (a local folder or an object-storage prefix; workers read and write them
themselves, so the driver hands them no local paths):

    inputs-00003.pickle   the SourceItems of shard 3, written by the driver
    faces-00003.pickle    its outcome: (faces after synergy, rejects), written by the worker
    done-00003.json       its marker, written last: fingerprint and counts
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.io.storage import files_under, location


@dataclass(frozen=True)
class Shard:
    index: int
    fingerprint: str  # build key + the shard's inputs: a marker with another fingerprint is stale
    size: int  # inputs in the shard


def _digest(value: Any) -> str:
    """JSON default for hashing an item: bytes by their digest, anything else by its repr."""
    return hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else repr(value)


def fingerprint(build_key: str, items: Sequence[SourceItem]) -> str:
    h = hashlib.sha256(build_key.encode())
    for item in items:
        h.update(json.dumps(asdict(item), sort_keys=True, default=_digest).encode())
    return h.hexdigest()[:24]


def plan_shards(items: Sequence[SourceItem], shard_size: int, build_key: str) -> list[tuple[Shard, list[SourceItem]]]:
    """The inputs in consecutive shards of `shard_size`: the same inputs and key give the same shards."""
    shards = []
    for index, start in enumerate(range(0, len(items), shard_size)):
        part = list(items[start:start + shard_size])
        shards.append((Shard(index, fingerprint(build_key, part), len(part)), part))
    return shards


class ShardStore:
    """The shard files of one staging folder. Holds only the folder's name, so it pickles into DoFns."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir

    def _path(self, kind: str, shard: Shard, suffix: str):
        return location(self.work_dir) / f"{kind}-{shard.index:05d}.{suffix}"

    def write_inputs(self, shard: Shard, items: Sequence[SourceItem]) -> None:
        self._path("inputs", shard, "pickle").write_bytes(pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL))

    def read_inputs(self, shard: Shard) -> list[SourceItem]:
        return pickle.loads(self._path("inputs", shard, "pickle").read_bytes())

    def is_done(self, shard: Shard) -> bool:
        """Whether the shard's marker is there and is this shard's (same inputs, same build key)."""
        try:
            marker = json.loads(self._path("done", shard, "json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(marker, dict) and marker.get("fingerprint") == shard.fingerprint

    def finished(self, shards: Sequence[Shard]) -> list[Shard]:
        """The shards whose marker is there and is theirs (the folder listed once, only markers found read)."""
        present = set(files_under(location(self.work_dir)))
        return [s for s in shards if self._path("done", s, "json").name in present and self.is_done(s)]

    def write_outcome(self, shard: Shard, faces: list[Sample], rejects: list[Reject]) -> None:
        """The shard's faces and rejects, then its marker: a marker always has its outcome complete beside it."""
        self._path("faces", shard, "pickle").write_bytes(
            pickle.dumps((faces, rejects), protocol=pickle.HIGHEST_PROTOCOL))
        marker = {"shard": shard.index, "fingerprint": shard.fingerprint, "inputs": shard.size,
                  "faces": len(faces), "rejects": len(rejects)}
        self._path("done", shard, "json").write_text(json.dumps(marker) + "\n")

    def read_outcome(self, shard: Shard) -> tuple[list[Sample], list[Reject]]:
        return pickle.loads(self._path("faces", shard, "pickle").read_bytes())
