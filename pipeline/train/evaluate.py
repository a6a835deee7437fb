"""`fea evaluate`: generate answers on a split (default test) and score them (score.py).

The prompt of each row is its first user turn (with the image), rendered and tokenized exactly as
in training; answers are generated greedily. Predictions and scores are written when an output
folder is given (`predictions.jsonl`, `scores.json`).
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

from pipeline.train.data import first_answer, load_split, prompt_messages
from pipeline.train.score import score_answers


def generate_answers(processor: Any, model: Any, rows: list[dict[str, Any]], max_new_tokens: int = 128) -> list[str]:
    """Greedy answers of `model` to the first user turn of each row (one batch)."""
    import torch

    from pipeline.train.encode import collate, encode_example

    examples = [encode_example(processor, prompt_messages(r["conversations"]), r["image"].convert("RGB"),
                               generation_prompt=True) for r in rows]
    batch = collate(examples, processor.tokenizer.pad_token_id, padding_side="left")
    batch.pop("labels")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(next(model.parameters()).dtype)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
    return processor.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def evaluate(build_dir: Path | str, model: str, split: str = "test", limit: int | None = None,
             batch_size: int = 8, max_new_tokens: int = 128, device: str | None = None,
             output_dir: Path | str | None = None, streaming: bool = False) -> dict[str, Any]:
    """Generate on `split` of the build and score: FE accuracy, AU F1 (see score.score_answers)."""
    import torch

    from pipeline.train.loop import load_model

    rows = iter(load_split(build_dir, split, streaming=streaming, limit=limit))  # fails before loading a model
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    processor, net = load_model(model, device)
    net.eval()
    predictions: list[dict[str, Any]] = []
    while chunk := list(islice(rows, batch_size)):
        for row, answer in zip(chunk, generate_answers(processor, net, chunk, max_new_tokens), strict=True):
            predictions.append({"sample_id": row["sample_id"], "task": row["task"], "emotion": row["emotion"],
                                "au_present": list(row["au_present"] or []), "answer": answer,
                                "reference": first_answer(row["conversations"])})
    scores = {"split": split, "n": len(predictions), "model": str(model), **score_answers(predictions)}
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "predictions.jsonl", "w") as fh:
            fh.writelines(json.dumps(p) + "\n" for p in predictions)
        (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    return scores
