"""What a build works on: every source's inputs (weights and limits applied, refusals on reading kept), and the
shards they are cut into, reusing those an interrupted run of the same params and inputs finished."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pipeline.config import Config
from pipeline.domain.record import Reject, SourceItem
from pipeline.domain.splits import unit_hash
from pipeline.io.build_dir import BuildDir
from pipeline.io.manifest import Resume
from pipeline.io.publish import clear_for_rerun
from pipeline.io.shards import Shard, ShardStore, plan_shards
from pipeline.io.storage import make_dirs
from pipeline.sources import make_source

log = logging.getLogger(__name__)


def enumerate_inputs(config: Config) -> tuple[list[SourceItem], list[Reject]]:
    """List every input of every source (applying per-source weights and limits) and the entries
    refused on reading."""
    items: list[SourceItem] = []
    rejects: list[Reject] = []
    for source_cfg, path in zip(config.sources, config.paths.sources, strict=True):
        taken = 0
        for entry in make_source(source_cfg, path).checked_items():
            if source_cfg.weight < 1.0 and not sampled(entry, source_cfg.weight, config.split.seed):
                continue
            if source_cfg.limit is not None and taken >= source_cfg.limit:
                break
            taken += 1
            (rejects if isinstance(entry, Reject) else items).append(entry)
    return items, rejects


def sampled(entry: SourceItem | Reject, weight: float, seed: int) -> bool:
    """Keep an entry with probability `weight`, decided by a seeded hash of its id (same on every run).
    Frames of one video share the video's decision."""
    return unit_hash(f"{seed}|{entry.source}|{entry.source_item}") < weight


@dataclass
class Shards:
    """The image work of a build in shards: all of them, those an interrupted run finished, those to do."""

    store: ShardStore
    all: list[Shard]
    reused: list[Shard]
    todo: list[Shard]

    def resume(self, config: Config) -> Resume:
        return Resume(shards=len(self.all), shard_size=config.runner.shard_size, reused=len(self.reused))


def prepare_shards(config: Config, staging: BuildDir, items: list[SourceItem], versions: dict[str, str]) -> Shards:
    """Cut the inputs into shards and write the inputs of those to do; the shards an interrupted run of the same
    params and inputs finished are reused (runner.resume)."""
    clear_for_rerun(staging, keep_work=config.runner.resume)
    make_dirs(staging.work_dir)
    store = ShardStore(str(staging.work_dir))
    parts = plan_shards(items, config.runner.shard_size, json.dumps(versions, sort_keys=True))
    reused = store.finished([shard for shard, _ in parts]) if config.runner.resume else []
    done = set(reused)
    todo = [shard for shard, _ in parts if shard not in done]
    for shard, part in parts:
        if shard not in done:
            store.write_inputs(shard, part)
    if reused:
        log.warning("build: resuming %s: %d of %d shards (%d inputs) reused from the interrupted run",
                    staging, len(reused), len(parts), sum(s.size for s in reused))
    return Shards(store, [shard for shard, _ in parts], reused, todo)
