"""`fea train`: fine-tune an image-text-to-text model on a release's train split.

A plain PyTorch loop: rows from `datasets` (map-style, or streaming IterableDataset), chat
examples with the prompt masked (encode.py), AdamW, loss logged every step (stdout and
`<output>/train_log.jsonl`), checkpoints every `save_steps` and the final model in `<output>`.
`--lora` trains LoRA adapters (peft) on the language model instead of all weights; the final
model is saved merged. `--model tiny` builds a tiny random LLaVA-style model first (offline).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from pipeline.train.data import conversation_texts, load_split, to_messages

TINY = "tiny"
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
VISION_PARTS = ("vision_tower", "vision_model", "visual")


@dataclass
class TrainConfig:
    build_dir: str | Path
    model: str
    output_dir: Path
    split: str = "train"
    streaming: bool = False
    limit: int | None = None  # train on the first N rows only (e.g. to overfit a handful)
    epochs: int = 1
    max_steps: int | None = None  # when set, cycles through the data until reached (epochs ignored)
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_length: int | None = 2048
    save_steps: int = 0  # 0 = only the final model
    freeze_vision: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int | None = None  # default 2 * r
    lora_dropout: float = 0.05
    lora_targets: str = LORA_TARGETS
    seed: int = 0
    device: str | None = None  # default cuda when available
    bf16: bool = False
    shuffle_buffer: int = 256  # streaming only
    echo: bool = True  # print the loss of every step


@dataclass
class TrainResult:
    output_dir: Path
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def load_model(model: str, device: str, bf16: bool = False) -> tuple[Any, Any]:
    """(processor, model) from a local folder or hub id, on `device`."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model)
    loaded = AutoModelForImageTextToText.from_pretrained(model, dtype=torch.bfloat16 if bf16 else torch.float32)
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return processor, loaded.to(device)


def buffer_shuffle(rows: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Shuffle a stream through a buffer of `size` rows (IterableDataset.shuffle does the same, but on a
    parquet stream it sleeps 5 s at the end of every pass, to work around an Arrow thread-shutdown bug)."""
    buffer: list[Any] = []
    for row in rows:
        buffer.append(row)
        if len(buffer) >= size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def _rows(ds, cfg: TrainConfig) -> Iterator[dict[str, Any]]:
    """Rows in a new shuffled order every epoch; forever when max_steps is set."""
    epoch = 0
    while cfg.max_steps or epoch < cfg.epochs:
        if cfg.streaming:
            shuffled = buffer_shuffle(ds, cfg.shuffle_buffer, random.Random(cfg.seed + epoch))
        else:
            shuffled = ds.shuffle(seed=cfg.seed + epoch)
        seen = 0
        for row in shuffled:
            seen += 1
            yield row
        if not seen:
            raise ValueError(f"{cfg.build_dir}: the {cfg.split} split has no rows")
        epoch += 1


def _apply_lora(model: Any, cfg: TrainConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError("--lora needs peft: pip install peft (or the project's [train] extra)") from exc
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _save(model, processor, path: Path) -> None:
    model.save_pretrained(path)
    processor.save_pretrained(path)


def _provenance(build_dir: str | Path) -> dict[str, Any]:
    from pipeline.io.build_dir import BuildDir

    build = BuildDir(build_dir)
    if not build.has_manifest():
        return {}
    manifest = build.manifest
    return {"versions": manifest.versions, "schema_version": manifest.schema_version,
            "counts": {"rows": manifest.counts.rows, "rows_by_split": manifest.counts.rows_by_split}}


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune `cfg.model` on the build; return the per-step losses. Raises FileNotFoundError without a split."""
    import torch

    from pipeline.train.encode import collate, encode_example

    started = time.monotonic()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_split(cfg.build_dir, cfg.split, streaming=cfg.streaming, limit=cfg.limit)
    model_path = cfg.model
    if model_path == TINY:
        from pipeline.train.tiny import make_tiny_model

        model_path = str(make_tiny_model(out / "base-model", conversation_texts(islice(iter(ds), 512))))
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    processor, model = load_model(model_path, device, cfg.bf16)
    if cfg.freeze_vision:
        for name, param in model.named_parameters():
            if any(part in name for part in VISION_PARTS):
                param.requires_grad_(False)
    if cfg.lora:
        model = _apply_lora(model, cfg)
    (out / "train_config.json").write_text(json.dumps(
        {**asdict(cfg), "model": model_path, "build": _provenance(cfg.build_dir)}, indent=2, default=str) + "\n")

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0)
    pad_id = processor.tokenizer.pad_token_id
    dtype = next(model.parameters()).dtype
    rows = _rows(ds, cfg)
    result = TrainResult(out)
    model.train()
    with open(out / "train_log.jsonl", "w") as log:
        while not (cfg.max_steps and result.steps >= cfg.max_steps):
            total, batches = 0.0, 0
            for _ in range(cfg.grad_accum):
                chunk = list(islice(rows, cfg.batch_size))
                if not chunk:
                    break
                examples = [encode_example(processor, to_messages(r["conversations"]), r["image"].convert("RGB"),
                                           cfg.max_length) for r in chunk]
                batch = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
                if "pixel_values" in batch:
                    batch["pixel_values"] = batch["pixel_values"].to(dtype)
                loss = model(**batch).loss / cfg.grad_accum
                loss.backward()
                total += loss.item()
                batches += 1
            if not batches:
                break  # the epochs are done
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.steps += 1
            loss_value = total * cfg.grad_accum / batches
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {result.steps}; lower --lr")
            result.losses.append(loss_value)
            entry = {"step": result.steps, "loss": round(loss_value, 6), "lr": scheduler.get_last_lr()[0],
                     "seconds": round(time.monotonic() - started, 2)}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if cfg.echo:
                print(f"step {result.steps}{'/' + str(cfg.max_steps) if cfg.max_steps else ''} "
                      f"loss {loss_value:.4f}", flush=True)
            if cfg.save_steps and result.steps % cfg.save_steps == 0:
                _save(model, processor, out / f"checkpoint-{result.steps}")
    if cfg.lora:
        _save(model, processor, out / "adapter")
        model = model.merge_and_unload()
    _save(model, processor, out)
    result.seconds = time.monotonic() - started
    return result
