"""Verify: every assistant text is checked against the labels before it is written.

LLM text (when the LLM stage produced it) replaces the template text only if the grounding verifier
finds nothing wrong with every turn; otherwise the instruction keeps its template text and records
why (`llm_status` hallucinated, with the verifier's reason). The final text, template or LLM, gets a
verdict; template text that fails (a broken template) is kept with verdict "ungrounded" so validation
fails the build loudly rather than the row vanishing.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.domain.record import Instruction
from pipeline.grounding import disagreements
from pipeline.knowledge import Knowledge
from pipeline.stages.base import Stage


def problems_of(inst: Instruction, conversation: list[dict[str, str]], knowledge: Knowledge | None = None
                ) -> list[str]:
    """What the verifier finds wrong with the assistant side of a conversation, read as one answer (a
    multi-turn conversation may state the emotion in its last turn only)."""
    answer = "\n".join(t["content"] for t in conversation if t["role"] == "assistant")
    return disagreements(answer, inst.sample.item.emotion, list(inst.sample.au_present), inst.task, knowledge)


class VerifyStage(Stage):
    """Verifies with the knowledge the texts were rendered with (default: the packaged one)."""

    name = "verify"

    def __init__(self, knowledge: Knowledge | None = None) -> None:
        super().__init__()
        self.knowledge = knowledge

    def run(self, inst: Instruction) -> Iterator[Instruction]:
        if inst.llm_status == "ok":
            candidate = [dict(t) for t in inst.conversations]
            for i, text in inst.llm_answers.items():
                candidate[i] = {"role": "assistant", "content": text}
            problems = problems_of(inst, candidate, self.knowledge)
            if problems:
                inst.llm_status = "hallucinated"
                inst.llm_detail = "; ".join(problems)[:300]
                self.count("llm_hallucinated")
            else:
                inst.conversations = candidate
                inst.text_source = "llm"
                self.count("llm_grounded")
        problems = problems_of(inst, inst.conversations, self.knowledge)
        inst.grounding_verdict = "ungrounded" if problems else "grounded"
        if problems:
            self.count("ungrounded")
            inst.grounding_reason = "; ".join(problems)[:300]
        yield inst
