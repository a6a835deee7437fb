"""Chat messages -> model inputs, with the loss only on the assistant's answers; rows -> training batches.

The conversation is rendered with the model's own chat template, then cut into segments: every
prompt part (user turns, and the template's header that opens an assistant turn) is masked out
of the loss (label -100); the assistant's text and its end-of-turn marker are learned. Segments
are tokenized one by one, so the mask is exact whatever the tokenizer merges across boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pipeline.train.data import to_messages

IGNORE_INDEX = -100
INPUT_KEYS = ("input_ids", "attention_mask", "labels")


def render(processor: Any, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str:
    if not messages:
        return ""
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def segments(processor: Any, messages: list[dict[str, Any]], generation_prompt: bool = False) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, learned) pieces; their concatenation is the full rendering.

    With `generation_prompt`, a last (prompt) piece opens the assistant's turn: the input at generation.
    """
    pieces: list[tuple[str, bool]] = []
    done = ""
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            head = render(processor, messages[:k], generation_prompt=True)
            full = render(processor, messages[: k + 1])
            parts = [(head, False), (full, True)]
        else:
            full = render(processor, messages[: k + 1])
            parts = [(full, False)]
        if generation_prompt and k == len(messages) - 1:
            parts.append((render(processor, messages, generation_prompt=True), False))
        for text, learned in parts:
            if not text.startswith(done):
                raise ValueError("the chat template does not render conversations prefix by prefix; "
                                 "cannot locate the prompt tokens to mask")
            if text[len(done):]:
                pieces.append((text[len(done):], learned))
            done = text
    return pieces


def _adds_specials(processor, text: str) -> bool:
    """Let the tokenizer add BOS etc. only when the template has not already written them."""
    bos = getattr(processor.tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def encode_example(processor: Any, messages: list[dict[str, Any]], image: Any, max_length: int | None = None,
                   generation_prompt: bool = False) -> dict:
    """input_ids, attention_mask, labels (prompt = -100) and the image tensors of one conversation.

    With `generation_prompt` (messages = the prompt only), the result is the input to generate an answer.
    """
    ids: list[int] = []
    labels: list[int] = []
    extra: dict[str, torch.Tensor] = {}
    pieces = segments(processor, messages, generation_prompt)
    marker = getattr(processor, "image_token", None)
    image_at = next((i for i, (text, _) in enumerate(pieces) if marker and marker in text), 0)
    for i, (text, learned) in enumerate(pieces):
        specials = i == 0 and _adds_specials(processor, text)
        if i == image_at:
            enc = processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=specials)
            piece = enc["input_ids"][0].tolist()
            extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        else:
            piece = processor.tokenizer(text, add_special_tokens=specials)["input_ids"]
        ids += piece
        labels += piece if learned else [IGNORE_INDEX] * len(piece)
    if max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(len(ids), dtype=torch.long),
            "labels": torch.tensor(labels), **extra}


def collate(examples: list[dict], pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad ids (pad_token_id), masks (0) and labels (-100) to the longest; concatenate the image tensors."""
    longest = max(len(e["input_ids"]) for e in examples)
    batch: dict[str, Any] = {}
    for key, value in (("input_ids", pad_token_id), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
        rows = []
        for e in examples:
            pad = torch.full((longest - len(e[key]),), value, dtype=e[key].dtype)
            rows.append(torch.cat([e[key], pad] if padding_side == "right" else [pad, e[key]]))
        batch[key] = torch.stack(rows)
    for key in examples[0]:
        if key not in INPUT_KEYS:
            batch[key] = torch.cat([e[key] for e in examples])
    return batch


@dataclass
class ChatCollator:
    """The Trainer's data collator: rows of a release (`conversations`, `image`) -> a padded training batch.

    Rows are encoded here, a batch at a time, so a streamed split is never encoded ahead. Floating image
    tensors take the model's dtype (a bf16 model gets bf16 pixels)."""

    processor: Any
    max_length: int | None = None
    dtype: torch.dtype = torch.float32

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        examples = [encode_example(self.processor, to_messages(r["conversations"]), r["image"].convert("RGB"),
                                   self.max_length) for r in rows]
        batch = collate(examples, self.processor.tokenizer.pad_token_id)
        return {k: v.to(self.dtype) if k not in INPUT_KEYS and v.is_floating_point() else v for k, v in batch.items()}
