"""Batch-API JSONL for large jobs: export the requests a build would send, import the results.

With `llm.mode: batch-export` a build sends nothing: each uncached request becomes one line of the
OpenAI Batch input format ({"custom_id", "method", "url", "body"}) with the cache key as custom_id,
and its rows keep their template text (llm_status "pending_batch"). Submit the file to any
Batch-compatible endpoint; `fea llm import-batch RESULTS.jsonl` stores the results in the response
cache; the next online build finds them there and sends no request for them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.llm.cache import ResponseCache, request_key
from pipeline.llm.client import unusable

ENDPOINT = "/v1/chat/completions"
_KEY = re.compile(r"^[0-9a-f]{64}$")


def request_line(body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": request_key(body), "method": "POST", "url": ENDPOINT, "body": body},
                      sort_keys=True, ensure_ascii=False)


def merge_request_files(parts: Iterable[Path], target: Path) -> int:
    """Concatenate per-worker request files into one, one line per distinct request, sorted by id
    (a retried bundle may have written a request twice). Returns the number of requests."""
    lines: dict[str, str] = {}
    for part in sorted(parts):
        for line in part.read_text().splitlines():
            if line.strip():
                lines[json.loads(line)["custom_id"]] = line
    if lines:
        target.write_text("".join(lines[k] + "\n" for k in sorted(lines)))
    return len(lines)


def import_results(results: Path, cache: ResponseCache) -> dict[str, int]:
    """Store every usable result of a Batch output file in the cache; count the rest by reason."""
    counts: Counter[str] = Counter()
    for line in Path(results).read_text().splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            key = entry["custom_id"]
        except (ValueError, KeyError, TypeError):
            counts["unreadable_line"] += 1
            continue
        if not isinstance(key, str) or not _KEY.match(key):
            counts["foreign_custom_id"] += 1
            continue
        response = entry.get("response") or {}
        if entry.get("error") or response.get("status_code") != 200:
            counts["failed_request"] += 1
            continue
        body = response.get("body") or {}
        try:
            choice = body["choices"][0]
            content, finish = choice["message"].get("content"), choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            counts["malformed"] += 1
            continue
        if unusable(content, finish):
            counts["malformed"] += 1
            continue
        usage = body.get("usage") or {}
        cache.put(key, content.strip(), {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens")
                                         if k in usage}, body.get("model"))
        counts["imported"] += 1
    return dict(sorted(counts.items()))
