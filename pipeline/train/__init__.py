"""The bundled trainer and evaluator: fine-tune an image-text-to-text model on a release, score it.

It consumes a build only through 🤗 `datasets` (the Parquet files of `<build>/data`), like any
trainer would; it never imports the pipeline's stages. transformers (and peft for `--lora`) are
imported on use: `pip install -e ".[train]"`.

  data.py      load a split (map-style or streaming); rows -> chat messages with the image
  encode.py    messages -> input ids, labels with the prompt (user turns) masked to -100; the collator
  tiny.py      a tiny randomly initialised LLaVA-style model with a locally built tokenizer (offline tests)
  loop.py      `fea train` on the 🤗 Trainer: per-step loss log, checkpoints, optional LoRA
  evaluate.py  `fea evaluate`: generate answers on the test split and score them
  score.py     FEABench-style scoring: FE accuracy and AU F1 of generated answers
"""

from __future__ import annotations

from pipeline.train.score import parse_aus, parse_emotion, score_answers

__all__ = ["parse_aus", "parse_emotion", "score_answers"]
