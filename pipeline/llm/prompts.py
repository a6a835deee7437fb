"""Chat requests for the LLM stage, rendered from templates/llm/prompts.yaml in the template sandbox.

A request is the JSON body of one chat-completions call; its hash is the cache key, so the same
labels, question, model and parameters always map to the same cached response.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline.domain.record import Sample
from pipeline.templating import TemplateError, intensity_level, make_environment

MODES = ("rewrite", "reason")


class PromptBook:
    """The system prompt and one user-prompt template per mode, compiled once."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TemplateError(f"{path}: cannot read prompts: {exc}") from exc
        missing = [k for k in ("version", "system", *MODES) if not isinstance(data, dict) or k not in data]
        if missing:
            raise TemplateError(f"{path}: missing {missing}")
        env = make_environment()
        self.version = str(data["version"])
        self.system = str(data["system"]).strip()
        try:
            self.templates = {mode: env.from_string(data[mode]) for mode in MODES}
        except Exception as exc:  # noqa: BLE001 - any compile error is a broken prompt file
            raise TemplateError(f"{path}: {exc}") from exc

    def messages(self, mode: str, labels: dict[str, Any], question: str, answer: str) -> list[dict[str, str]]:
        user = self.templates[mode].render(labels=labels, question=question, answer=answer).strip()
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def labels_of(sample: Sample, vocabulary: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The facts a prompt may state: the canonical emotion and the present AUs (code, name, level word),
    strongest first. Nothing else of the sample (file names, raw labels, metadata) reaches a prompt."""
    index = {row["code"]: i for i, row in enumerate(vocabulary)}
    aus = []
    for code in dict.fromkeys(sample.au_present):
        i = index[code]
        value = float(sample.au_intensity[i]) if sample.au_intensity is not None else 0.0
        aus.append((-value, vocabulary[i]["number"],
                    {"code": code, "name": vocabulary[i]["name"], "level": intensity_level(value)}))
    return {"emotion": sample.item.emotion, "action_units": [entry for *_, entry in sorted(aus, key=lambda a: a[:2])]}


def request_body(messages: list[dict[str, str]], model: str, temperature: float, max_tokens: int,
                 seed: int) -> dict[str, Any]:
    return {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens,
            "seed": seed}
