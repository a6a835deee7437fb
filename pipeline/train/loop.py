"""`fea train`: fine-tune an image-text-to-text model on a release's train split, with the 🤗 `Trainer`.

Rows come from `datasets` (map-style, or streamed through a shuffle buffer); the collator
(encode.ChatCollator) turns them into chat examples with the prompt masked. The `Trainer` runs the
optimisation (AdamW, linear warm-up then a constant rate, gradient clipping at 1.0), saves
`checkpoint-N` every `save_steps` and reports nowhere (no wandb, tensorboard or hub). A callback
prints the loss of every step and logs it to `<output>/train_log.jsonl`; the final model goes to
`<output>`. `--lora` trains LoRA adapters (peft) on the language model instead of all weights; the
final model is saved merged, the adapter in `<output>/adapter`. `--model tiny` builds a tiny random
LLaVA-style model first (offline).
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

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from pipeline.train.data import conversation_texts, load_split, split_size
from pipeline.train.encode import ChatCollator

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
    device: str | None = None  # "cpu", or the Trainer's accelerator (cuda when available)
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


class StreamedSplit(torch.utils.data.IterableDataset):
    """A streamed split as the Trainer's dataset: one pass per epoch, in a new shuffled order each epoch (the
    Trainer calls `set_epoch`). Its length (from the shards' footers) lets the Trainer count epochs and steps."""

    def __init__(self, rows: Iterable[Any], size: int, buffer: int, seed: int) -> None:
        self.rows, self.size, self.buffer, self.seed, self.epoch = rows, size, buffer, seed, 0

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        return buffer_shuffle(self.rows, self.buffer, random.Random(self.seed + self.epoch))


class StepLog(TrainerCallback):
    """The loss of every optimizer step: kept, printed (`echo`) and appended to train_log.jsonl. A loss that is
    not finite stops the run (the Trainer itself would only leave it out of its average)."""

    def __init__(self, path: Path, max_steps: int | None, echo: bool) -> None:
        self.path, self.max_steps, self.echo = path, max_steps, echo
        self.losses: list[float] = []
        self.started = time.monotonic()
        path.write_text("")

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs or "loss" not in logs:
            return  # the summary at the end of training
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {state.global_step}; lower --lr")
        self.losses.append(loss)
        entry = {"step": state.global_step, "loss": round(loss, 6), "lr": logs.get("learning_rate"),
                 "seconds": round(time.monotonic() - self.started, 2)}
        with open(self.path, "a") as log:
            log.write(json.dumps(entry) + "\n")
        if self.echo:
            print(f"step {state.global_step}{'/' + str(self.max_steps) if self.max_steps else ''} loss {loss:.4f}",
                  flush=True)


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


def _arguments(cfg: TrainConfig, out: Path, device: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1, learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps, lr_scheduler_type="constant_with_warmup",
        max_grad_norm=1.0, optim="adamw_torch", seed=cfg.seed, use_cpu=device == "cpu",
        logging_strategy="steps", logging_steps=1, logging_nan_inf_filter=False,
        save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500, save_only_model=True,
        report_to="none", disable_tqdm=True, remove_unused_columns=False, dataloader_pin_memory=device != "cpu",
    )


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune `cfg.model` on the build; return the per-step losses. Raises FileNotFoundError without a split."""
    started = time.monotonic()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_split(cfg.build_dir, cfg.split, streaming=cfg.streaming, limit=cfg.limit)
    size = split_size(cfg.build_dir, cfg.split, cfg.limit) if cfg.streaming else len(ds)
    if not size:
        raise ValueError(f"{cfg.build_dir}: the {cfg.split} split has no rows")
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

    data = StreamedSplit(ds, size, cfg.shuffle_buffer, cfg.seed) if cfg.streaming else ds
    steps = StepLog(out / "train_log.jsonl", cfg.max_steps, cfg.echo)
    trainer = Trainer(model=model, args=_arguments(cfg, out, device), train_dataset=data, processing_class=processor,
                      data_collator=ChatCollator(processor, cfg.max_length, next(model.parameters()).dtype),
                      callbacks=[steps])
    trainer.remove_callback(PrinterCallback)  # StepLog prints the steps
    if torch.device(device).type != trainer.args.device.type:
        raise ValueError(f"--device {device}: the Trainer runs on {trainer.args.device}")
    trainer.train()
    if cfg.lora:
        _save(model, processor, out / "adapter")
        model = model.merge_and_unload()
    _save(model, processor, out)
    return TrainResult(out, steps.losses, trainer.state.global_step, time.monotonic() - started)
