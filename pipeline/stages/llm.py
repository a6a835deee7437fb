"""LLM stage: rewrite template answers, or write reasoning, from the labels through an OpenAI-compatible API.

A batched stage (`beam.BatchElements`) so one worker call has many requests in flight: each worker process runs
`concurrency` requests at once (the build divides `llm.max_concurrency` among its workers, so the total
never exceeds it). Every request is looked up in the response cache first; only misses are sent, and
only while the token budget lasts. The stage only fetches: it attaches the texts to the instruction
(`llm_answers`) and the verify stage decides whether they replace the template text. A failure after
the client's retries marks the instruction (`llm_status` failed, with the reason) and it keeps its
template text, or, with `on_error: stop`, stops the build (responses so far stay cached). The stage never
rejects on its own: an instruction leaves it with its texts attached or as it came.
"""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.config import LLMConfig
from pipeline.domain.record import Instruction
from pipeline.errors import LLMStopped
from pipeline.knowledge import Knowledge
from pipeline.llm.batch import request_line
from pipeline.llm.budget import TokenBudget
from pipeline.llm.cache import ResponseCache, request_key
from pipeline.llm.client import ChatClient, Completion, LLMFailure
from pipeline.llm.prompts import PromptBook, labels_of, request_body
from pipeline.stages.base import BatchStage
from pipeline.templating import IMAGE_TOKEN


class LLMStage(BatchStage):
    name = "llm"
    stops_run = (LLMStopped,)  # llm.on_error: stop

    def __init__(self, cfg: LLMConfig, knowledge: Knowledge, prompts_path: str, cache_dir: str,
                 budget_ledger: str, batch_dir: str, concurrency: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocabulary = list(knowledge.au_vocabulary)  # the labels a prompt states, named as the build names them
        self.prompts_path = prompts_path
        self.cache_dir = cache_dir
        self.budget_ledger = budget_ledger
        self.batch_dir = batch_dir
        self.concurrency = concurrency
        self.client: ChatClient | None = None

    def setup(self) -> None:
        self.book = PromptBook(self.prompts_path)
        self.cache = ResponseCache(self.cache_dir)
        self.budget = TokenBudget(self.budget_ledger, self.cfg.budget_tokens)
        if self.cfg.mode == "online":
            # Read here, in the worker, from the environment: the key never travels in the pipeline graph.
            api_key = os.environ.get(self.cfg.api_key_env, "")
            self.client = ChatClient(self.cfg.base_url, api_key, self.cfg.timeout_s, self.cfg.max_retries)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm")

    def teardown(self) -> None:
        if getattr(self, "pool", None):
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.client is not None:
            self.client.close()

    # ------------------------------------------------------------------ requests of one instruction

    def requests_of(self, inst: Instruction) -> list[tuple[int, dict[str, Any]]]:
        """(conversation index, request body) for each assistant turn of an instruction sent to the LLM."""
        mode = self.cfg.tasks.get(inst.task)
        if mode is None:
            return []
        labels = labels_of(inst.sample, self.vocabulary)
        out = []
        for i, turn in enumerate(inst.conversations):
            if turn["role"] != "assistant" or i == 0:
                continue
            question = inst.conversations[i - 1]["content"].replace(IMAGE_TOKEN, "").strip()
            messages = self.book.messages(mode, labels, question, turn["content"])
            out.append((i, request_body(messages, self.cfg.model, self.cfg.temperature, self.cfg.max_tokens,
                                        self.cfg.seed)))
        return out

    def _send(self, body: dict[str, Any]) -> Completion:
        estimate = len(json.dumps(body["messages"])) // 3 + self.cfg.max_tokens
        if not self.budget.reserve(estimate):
            raise LLMFailure("budget_exhausted", f"token budget of {self.cfg.budget_tokens} reached")
        try:
            completion = self.client.complete(body)
        except LLMFailure:
            self.budget.settle(estimate, 0)
            raise
        self.budget.settle(estimate, sum(completion.usage.values()) or estimate)
        return completion

    # ------------------------------------------------------------------ the batch

    def run_batch(self, batch: list[Instruction]) -> list[list[Instruction]]:
        jobs = [(inst, i, body, request_key(body)) for inst in batch for i, body in self.requests_of(inst)]
        results: dict[str, Completion | LLMFailure] = {}
        pending: dict[str, Any] = {}
        export: list[str] = []
        for _, _, body, key in jobs:
            if key in results or key in pending:
                continue
            hit = self.cache.get(key)
            if hit is not None:
                self.count("cache_hits")
                results[key] = Completion(hit["content"], hit.get("usage") or {}, hit.get("model"))
            elif self.cfg.mode == "batch-export":
                results[key] = LLMFailure("pending_batch", "request written to the Batch-API export")
                export.append(request_line(body))
            else:
                pending[key] = self.pool.submit(self._send, body)
        for key, future in pending.items():
            self.count("requests")
            try:
                completion = future.result()
            except LLMFailure as failure:
                results[key] = failure
                continue
            self.cache.put(key, completion.content, completion.usage, completion.model)
            self.count("prompt_tokens", completion.usage.get("prompt_tokens", 0))
            self.count("completion_tokens", completion.usage.get("completion_tokens", 0))
            results[key] = completion
        if export:
            Path(self.batch_dir).mkdir(parents=True, exist_ok=True)
            part = Path(self.batch_dir) / f"requests-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            part.write_text("".join(line + "\n" for line in export))
        for inst in batch:
            self._attach(inst, [(i, results[key]) for j, i, _, key in jobs if j is inst])
        return [[inst] for inst in batch]

    def _attach(self, inst: Instruction, answers: list[tuple[int, Completion | LLMFailure]]) -> None:
        if not answers:
            return
        inst.llm_model = self.cfg.model
        failure = next((r for _, r in answers if isinstance(r, LLMFailure)), None)
        if failure is None:
            inst.llm_status = "ok"
            inst.llm_answers = {i: r.content for i, r in answers}
            return
        if failure.kind == "budget_exhausted":
            inst.llm_status = "budget_exhausted"
        elif failure.kind == "pending_batch":
            inst.llm_status = "pending_batch"
        else:
            if self.cfg.on_error == "stop":
                raise LLMStopped(f"LLM endpoint failed ({failure}); llm.on_error is 'stop'")
            inst.llm_status = "failed"
        self.count(inst.llm_status)
        inst.llm_detail = str(failure)[:300]
