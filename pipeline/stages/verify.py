"""Verify: every assistant text is checked against the labels before it is written.

LLM text (when the LLM stage produced it) replaces the template text only if the grounding verifier
finds nothing wrong with every turn; otherwise the instruction keeps its template text and records
why (`llm_status` hallucinated, with the verifier's reason). The final text, template or LLM, gets a
verdict; template text that fails (a broken template) is kept with verdict "ungrounded" so validation
fails the build loudly rather than the row vanishing.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.grounding import disagreements
from pipeline.record import Instruction
from pipeline.stages.base import Stage


def problems_of(inst: Instruction, texts: dict[int, str]) -> list[str]:
    emotion = inst.sample.item.emotion
    found: list[str] = []
    for text in texts.values():
        found += disagreements(text, emotion, list(inst.sample.au_present), inst.task)
    return found


class VerifyStage(Stage):
    name = "verify"

    def run(self, inst: Instruction) -> Iterator[Instruction]:
        if inst.llm_status == "ok":
            problems = problems_of(inst, inst.llm_answers)
            if problems:
                inst.llm_status = "hallucinated"
                inst.llm_detail = "; ".join(problems)[:300]
                self.count("llm_hallucinated")
            else:
                for i, text in inst.llm_answers.items():
                    inst.conversations[i] = {"role": "assistant", "content": text}
                inst.text_source = "llm"
                self.count("llm_grounded")
        own = {i: t["content"] for i, t in enumerate(inst.conversations) if t["role"] == "assistant"}
        problems = problems_of(inst, own)
        inst.grounding_verdict = "ungrounded" if problems else "grounded"
        if problems:
            self.count("ungrounded")
            inst.grounding_reason = "; ".join(problems)[:300]
        yield inst
