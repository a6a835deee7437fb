"""`fea train`, `fea evaluate` (the bundled trainer, pipeline.train) and `fea calibrate` (an AU head from builds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.commands.args import (
    BUILD_HELP,
    COUNT,
    EXIT_OK,
    EXIT_USAGE,
    POSITIVE,
    at_least,
    fraction,
    output_path,
    positive_float,
)


def add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="fine-tune an image-text-to-text model on a build's train split (loss on answers only)",
        description="Fine-tune a Hugging Face image-text-to-text model (e.g. a LLaVA checkpoint) on the "
                    "conversations of a build, read with `datasets`. User turns are masked out of the loss; the "
                    "loss of every step is printed and logged to OUTPUT/train_log.jsonl; the final model is saved "
                    "in OUTPUT. Needs transformers (and peft for --lora): pip install -e '.[train]'.")
    p.add_argument("dir", nargs="?", default="build/demo", help=BUILD_HELP + " (default build/demo)")
    p.add_argument("--model", required=True,
                   help="model folder or hub id; 'tiny' builds a tiny random LLaVA-style model offline (smoke tests)")
    p.add_argument("--output-dir", "-o", type=output_path, required=True,
                   help="where checkpoints and the final model go")
    p.add_argument("--split", default="train", help="split to train on (default train)")
    p.add_argument("--streaming", action="store_true", help="stream the rows (datasets IterableDataset)")
    p.add_argument("--limit", type=POSITIVE, help="use only the first N rows (e.g. to overfit a handful)")
    p.add_argument("--epochs", type=POSITIVE, default=1,
                   help="passes over the data (default 1; ignored with --max-steps)")
    p.add_argument("--max-steps", type=POSITIVE, help="stop after N optimizer steps (cycling through the data)")
    p.add_argument("--batch-size", type=POSITIVE, default=4, help="rows per forward pass (default 4)")
    p.add_argument("--grad-accum", type=POSITIVE, default=1, help="forward passes per optimizer step (default 1)")
    p.add_argument("--lr", type=positive_float, default=2e-5, help="AdamW learning rate (default 2e-5)")
    p.add_argument("--warmup-steps", type=COUNT, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--max-length", type=POSITIVE, default=2048, help="truncate examples to N tokens (default 2048)")
    p.add_argument("--save-steps", type=COUNT, default=0, help="save OUTPUT/checkpoint-N every N steps (0: final only)")
    p.add_argument("--freeze-vision", action="store_true", help="do not train the vision tower")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters on the language model (needs peft)")
    p.add_argument("--lora-r", type=POSITIVE, default=16, help="LoRA rank (default 16; alpha = 2 * rank)")
    p.add_argument("--bf16", action="store_true", help="load the model in bfloat16")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="shuffling and initialisation seed")
    p.set_defaults(handler=cmd_train)


def cmd_train(args) -> int:
    from pipeline.train.loop import TrainConfig, train

    result = train(TrainConfig(
        build_dir=args.dir, model=args.model, output_dir=args.output_dir, split=args.split,
        streaming=args.streaming, limit=args.limit, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps,
        max_length=args.max_length, save_steps=args.save_steps, freeze_vision=args.freeze_vision,
        lora=args.lora, lora_r=args.lora_r, bf16=args.bf16, device=args.device, seed=args.seed,
    ))
    first, last = (result.losses[0], result.losses[-1]) if result.losses else (float("nan"), float("nan"))
    print(f"trained {result.steps} steps in {result.seconds:.1f}s: loss {first:.4f} -> {last:.4f}; "
          f"model saved in {result.output_dir}")
    return EXIT_OK


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="generate answers on a build's test split; FE accuracy and AU F1",
        description="Generate an answer to the first user turn of every row (greedy) and score it FEABench-style: "
                    "FE accuracy (first canonical emotion word vs the label) and AU F1 (AU codes named vs au_present).")
    p.add_argument("dir", nargs="?", default="build/demo", help=BUILD_HELP + " (default build/demo)")
    p.add_argument("--model", required=True, help="model folder (e.g. the OUTPUT of fea train) or hub id")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--limit", type=POSITIVE, help="evaluate the first N rows only")
    p.add_argument("--batch-size", type=POSITIVE, default=8, help="rows per generate call (default 8)")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=128, help="answer length limit (default 128)")
    p.add_argument("--output", type=output_path, help="write predictions.jsonl and scores.json to this folder")
    p.add_argument("--streaming", action="store_true", help="stream the rows (datasets IterableDataset)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from pipeline.train.evaluate import evaluate

    scores = evaluate(args.dir, args.model, split=args.split, limit=args.limit, batch_size=args.batch_size,
                      max_new_tokens=args.max_new_tokens, device=args.device, output_dir=args.output,
                      streaming=args.streaming)
    print(json.dumps(scores, indent=2))
    return EXIT_OK


def add_calibrate(sub) -> None:
    c = sub.add_parser("calibrate", help="learn an AU head from FACS-coded builds (for --set au.head=FILE)",
                       # Written here, not read from pipeline.calibrate: importing it loads scikit-learn, ~2 s
                       # that every `fea` command would pay to build its parser.
                       description="Learn a whole AU head from FACS-coded builds, write it and report it per AU "
                       "(subject-disjoint held-out F1, precision, recall, correlation; rare AUs keep the base head).")
    c.add_argument("builds", nargs="+", help="build folders (or URLs) whose rows carry corpus AU codes")
    c.add_argument("--output", "-o", type=output_path, default=Path("au_head.calibrated.json"),
                   help="AU head JSON to write (format of the default head, au_head.json)")
    c.add_argument("--min-positives", type=POSITIVE, default=10,
                   help="fewest coded positives (and negatives) to learn an AU's own model; rarer AUs keep the base "
                   "head's model, with its threshold re-chosen when that scores better")
    c.add_argument("--folds", type=at_least(3), default=5, help="subject-disjoint cross-validation folds")
    c.add_argument("--neutral-rate", type=fraction, default=0.01,
                   help="largest share of the neutral faces (uncoded, labelled neutral) an AU may fire on")
    c.add_argument("--no-neutral-negatives", dest="neutral_negatives", action="store_false",
                   help="do not take uncoded neutral-labelled faces as negatives for every AU")
    c.add_argument("--appearance", type=int, default=20, metavar="K",
                   help="learn from the aligned crops' appearance too: the first K principal components of their "
                   "48 px gradient histograms (wrinkles: AU4, AU9, AU17, ...); 0 = blendshapes and mesh measures only")
    c.add_argument("--views", nargs=2, metavar=("AS_TAKEN", "REDUCED"), default=None,
                   help="two builds of the same photos seen two ways (e.g. as taken, and each face cropped to 48 px "
                   "grey: benchmarks/derived.py fer48), paired by file name; no labels are read. Learned scores are "
                   "penalised for changing between the two, so what a small corpus teaches holds on sharp photos")
    c.add_argument("--name", default="fea-calibrated", help="the head's name (in au_source, manifest and card)")
    c.add_argument("--terms", default=None, help="the terms of the corpus the head is learned from, kept in the head")
    c.add_argument("--base", help="head whose models rarely coded AUs keep (default: params' au.head)")
    c.add_argument("--params", type=Path, default=None, help="params file (for au.head)")
    c.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from pipeline.calibrate import calibrate, report_lines
    from pipeline.config import load_config

    config = load_config(args.params)
    base = Path(args.base) if args.base else config.paths.au_head
    try:
        # The command in a canonical form (folder names, not machine paths): the head file stays deterministic.
        meta = {"command": f"fea calibrate {' '.join(Path(str(b)).name for b in args.builds)} --base {base.name} "
                           f"--min-positives {args.min_positives} --folds {args.folds} "
                           f"--neutral-rate {args.neutral_rate} --appearance {args.appearance}"
                           + ("" if args.neutral_negatives else " --no-neutral-negatives")
                           + (f" --views {' '.join(Path(str(v)).name for v in args.views)}" if args.views else "")}
        if args.terms:
            meta["terms"] = args.terms
        head, fits = calibrate(args.builds, base, args.output, min_positives=args.min_positives, folds=args.folds,
                               neutral_rate=args.neutral_rate, neutral_negatives=args.neutral_negatives,
                               name=args.name, meta=meta, appearance_components=args.appearance, views=args.views)
    except ValueError as exc:
        print(f"fea calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(report_lines(head, fits)))
    learned = sum(f.kind == "logistic" for f in fits)
    print(f"AU head {head.tag}: {learned} AUs learned, {len(fits) - learned} from {head.meta['base']}; "
          f"written to {args.output}; use it with: fea build --set au.head={args.output}")
    return EXIT_OK
