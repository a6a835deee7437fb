"""What a build's manifest says about its LLM stage: the rows by LLM status, the hallucination rate, the token
budget spent, and the Batch-API requests of a batch-export build (merged into one file of the release).

The stage's workers write the budget ledger and their request files under the build's scratch folder
(`BUDGET_LEDGER`, `BATCH_DIR`); `summarize_llm` reads them back once the pipeline has run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pipeline.config import LLMConfig
from pipeline.io.build_dir import BuildDir

BUDGET_LEDGER = "_llm_budget.json"
BATCH_DIR = "_llm_batch"


def summarize_llm(llm: LLMConfig, scratch: Path, staging: BuildDir, rows_by_llm_status: dict[str, int]
                  ) -> dict[str, Any]:
    """LLM figures for the manifest (hallucination rate from the written rows' counts) and the merged
    Batch-API request file when the build ran in batch-export mode; empty when the stage was off."""
    if not llm.enabled:
        return {}
    answered = rows_by_llm_status.get("ok", 0) + rows_by_llm_status.get("hallucinated", 0)
    summary: dict[str, Any] = {
        "model": llm.model,
        "mode": llm.mode,
        "rows_by_llm_status": rows_by_llm_status,
        "hallucination_rate": round(rows_by_llm_status.get("hallucinated", 0) / answered, 4) if answered else None,
    }
    ledger = scratch / BUDGET_LEDGER
    if ledger.exists():
        summary["budget"] = {**json.loads(ledger.read_text() or "{}"), "limit": llm.budget_tokens}
        ledger.unlink()
    batch_dir = scratch / BATCH_DIR
    if batch_dir.exists():
        from pipeline.llm.batch import merge_request_files

        merged = scratch / "llm_batch_requests.jsonl"
        summary["batch_requests"] = merge_request_files(batch_dir.glob("*.jsonl"), merged)
        if merged.exists():
            (staging.root / merged.name).write_bytes(merged.read_bytes())
        shutil.rmtree(batch_dir)
    return summary
