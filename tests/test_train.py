"""The bundled trainer and evaluator: prompt masking, scoring, overfitting a handful of rows, CLI.

Offline and CPU-only: a synthetic build written with `datasets` (same layout as `fea build`'s data)
and a tiny random LLaVA-style model whose tokenizer is built locally (pipeline/train/tiny.py).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from pipeline.cli import main  # noqa: E402
from pipeline.train.data import conversation_texts, load_split, to_messages  # noqa: E402
from pipeline.train.encode import IGNORE_INDEX, collate, encode_example  # noqa: E402
from pipeline.train.score import parse_aus, parse_emotion, score_answers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    ("fe_recognition", "happiness", ["AU6", "AU12", "AU25"],
     "What facial expression does this person show?", "The facial expression is happiness."),
    ("au_recognition", "surprise", ["AU1", "AU2", "AU26"],
     "Which action units are present on this face?",
     "Action units present: AU1 (inner brow raiser) at marked intensity; AU2 (outer brow raiser) at slight "
     "intensity; AU26 (jaw drop) at severe intensity."),
    ("au_to_fe_reasoning", "anger", ["AU4", "AU7"],
     "Which emotion does this face express? Reason step by step from the facial action units you observe.",
     "Evidence: the face shows AU4 (brow lowerer, marked) and AU7 (lid tightener, slight).\n"
     "Inference: AU4 and AU7 are prototypical of anger.\nAnswer: anger."),
    ("description", None, ["AU12"],
     "Describe this person's face.",
     "Upper face: no clear action units; the brows and eyes are at rest.\n"
     "Lower face: AU12 (lip corner puller, marked)."),
]


def _image(seed: int):
    from PIL import Image

    img = Image.new("RGB", (64, 64), (40 * seed % 256, 90, 200 - 30 * seed))
    img.paste((255 - 50 * seed, 20 * seed, 60), (8 * seed, 16, 8 * seed + 24, 48))
    return img


def write_build(out: Path) -> Path:
    """A build-shaped folder: data/{train,test}-00000-of-00001.parquet with the columns the trainer reads."""
    import datasets

    features = datasets.Features({
        "sample_id": datasets.Value("string"), "image": datasets.Image(),
        "conversations": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "emotion": datasets.Value("string"), "au_present": datasets.List(datasets.Value("string")),
        "task": datasets.Value("string"), "split": datasets.Value("string"),
    })
    (out / "data").mkdir(parents=True)
    for split, rows in (("train", ROWS), ("test", ROWS[:3])):
        columns: dict[str, list] = {k: [] for k in features}
        for i, (task, emotion, aus, question, answer) in enumerate(rows):
            columns["sample_id"].append(f"{split}-{i}")
            columns["image"].append(_image(i))
            columns["conversations"].append([{"role": "user", "content": f"<image>\n{question}"},
                                             {"role": "assistant", "content": answer}])
            columns["emotion"].append(emotion)
            columns["au_present"].append(aus)
            columns["task"].append(task)
            columns["split"].append(split)
        ds = datasets.Dataset.from_dict(columns, features=features)
        ds.to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
    counts = {"inputs": 7, "accepted_inputs": 7, "rejected_inputs": 0, "rows": 7}
    (out / "manifest.json").write_text(json.dumps({"versions": {"params_hash": "test"}, "counts": counts}))
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    return write_build(tmp_path_factory.mktemp("release") / "build")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, build: Path) -> Path:
    from pipeline.train.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", conversation_texts(load_split(build)))


@pytest.fixture(scope="module")
def processor(tiny: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny)


# --- scoring ------------------------------------------------------------------------------------------------------

def test_parsers() -> None:
    assert parse_emotion("Surprised? No: SURPRISE, then anger.") == "surprise"
    assert parse_emotion("I am not sure.") is None
    assert parse_emotion("Happiness.") == "happiness"
    assert parse_aus("AU6, AU06 and XAU7 AU12b, AU25.") == {"AU6", "AU25"}


def test_scorer_on_hand_written_answers() -> None:
    items = [
        # FE correct
        {"task": "fe_recognition", "emotion": "happiness", "au_present": ["AU6", "AU12"],
         "answer": "The facial expression is happiness."},
        # FE wrong: the first emotion word counts
        {"task": "fe_recognition", "emotion": "sadness", "au_present": [], "answer": "Happiness, not sadness."},
        # FE correct; AU: tp AU1 AU2, fp AU5, fn AU26
        {"task": "au_to_fe_reasoning", "emotion": "surprise", "au_present": ["AU1", "AU2", "AU26"],
         "answer": "Evidence: AU1, AU2 and AU5. Answer: surprise."},
        # no gold emotion: not an FE row
        {"task": "fe_recognition", "emotion": None, "au_present": ["AU12"], "answer": "Happiness."},
        # AU: tp AU12 AU25, fp AU4
        {"task": "au_recognition", "emotion": None, "au_present": ["AU12", "AU25"], "answer": "AU12, AU25 and AU4."},
        # AU: fn AU4 AU7 (description is not an FE task)
        {"task": "description", "emotion": "anger", "au_present": ["AU4", "AU7"],
         "answer": "The face is at rest. Emotion: fear."},
        # FE wrong: no emotion named
        {"task": "fe_recognition", "emotion": "fear", "au_present": [], "answer": "I cannot tell."},
    ]
    scores = score_answers(items)
    assert scores["fe_n"] == 4 and scores["fe_accuracy"] == pytest.approx(2 / 4)
    assert scores["au_n"] == 3
    # tp 4, fp 2, fn 3
    assert scores["au_precision"] == pytest.approx(4 / 6)
    assert scores["au_recall"] == pytest.approx(4 / 7)
    assert scores["au_f1"] == pytest.approx(8 / 13)
    assert scores["au_f1_per_au"] == {"AU1": 1.0, "AU2": 1.0, "AU4": 0.0, "AU5": 0.0, "AU7": 0.0,
                                      "AU12": 1.0, "AU25": 1.0, "AU26": 0.0}


def test_scorer_perfect_and_empty() -> None:
    assert score_answers([]) == {"fe_accuracy": None, "fe_n": 0, "au_precision": None, "au_recall": None,
                                 "au_f1": None, "au_n": 0, "au_f1_per_au": {}}
    perfect = score_answers([{"task": task, "emotion": emotion, "au_present": aus, "answer": answer}
                             for task, emotion, aus, _, answer in ROWS if task != "fe_recognition"])
    assert perfect["au_f1"] == 1.0 and perfect["fe_accuracy"] == 1.0


# --- data and prompt masking -------------------------------------------------------------------------------------

def test_messages_put_the_image_in_the_first_user_turn() -> None:
    messages = to_messages([{"role": "user", "content": "<image>\nWhat emotion?"},
                            {"role": "assistant", "content": "Anger."}])
    assert messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What emotion?"}]
    assert messages[1]["content"] == [{"type": "text", "text": "Anger."}]


def test_prompt_tokens_are_masked(processor) -> None:
    turns = [{"role": "user", "content": "<image>\nWhich action units are present?"},
             {"role": "assistant", "content": "AU12 (lip corner puller)."},
             {"role": "user", "content": "And the emotion?"},
             {"role": "assistant", "content": "The facial expression is happiness."}]
    example = encode_example(processor, to_messages(turns), _image(1))
    ids, labels = example["input_ids"].tolist(), example["labels"].tolist()
    assert len(ids) == len(labels) and example["pixel_values"].shape[0] == 1
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    assert ids.count(image_id) == 16  # (32 / 8)^2 patches
    # Contiguous runs of learned / masked tokens, decoded.
    runs: list[tuple[bool, list[int]]] = []
    for token, label in zip(ids, labels, strict=True):
        learned = label != IGNORE_INDEX
        assert not learned or label == token
        if not runs or runs[-1][0] != learned:
            runs.append((learned, []))
        runs[-1][1].append(token)
    text = [(learned, tok.decode(run)) for learned, run in runs]
    assert text == [
        (False, "<s>USER: " + "<image>" * 16 + "\nWhich action units are present?\nASSISTANT: "),
        (True, "AU12 (lip corner puller).</s>\n"),
        (False, "USER: And the emotion?\nASSISTANT: "),
        (True, "The facial expression is happiness.</s>\n"),
    ]


def test_collate_pads_right_and_left(processor) -> None:
    a = encode_example(processor, to_messages([{"role": "user", "content": "<image>\nQ?"},
                                               {"role": "assistant", "content": "A."}]), _image(0))
    b = encode_example(processor, to_messages([{"role": "user", "content": "<image>\nA longer question here?"},
                                               {"role": "assistant", "content": "A longer answer."}]), _image(1))
    pad = processor.tokenizer.pad_token_id
    batch = collate([a, b], pad)
    n = len(a["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(b["input_ids"]))
    assert batch["input_ids"][0, n:].eq(pad).all() and batch["labels"][0, n:].eq(IGNORE_INDEX).all()
    assert batch["attention_mask"][0].sum() == n and batch["pixel_values"].shape[0] == 2
    left = collate([a, b], pad, padding_side="left")
    assert left["input_ids"][0, -n:].tolist() == a["input_ids"].tolist()


# --- training and evaluation -------------------------------------------------------------------------------------

def test_loss_falls_when_overfitting_four_rows(build: Path, tiny: Path, tmp_path: Path) -> None:
    from pipeline.train.loop import TrainConfig, train

    out = tmp_path / "run"
    result = train(TrainConfig(build_dir=build, model=str(tiny), output_dir=out, limit=4, batch_size=4,
                               max_steps=16, lr=5e-3, save_steps=8, device="cpu", echo=False))
    assert result.steps == 16 and len(result.losses) == 16
    assert result.losses[-1] < 0.5 * result.losses[0], result.losses
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, 17))
    for folder in (out / "checkpoint-8", out / "checkpoint-16", out):
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert json.loads((out / "train_config.json").read_text())["build"]["versions"]["params_hash"] == "test"


def test_streaming_and_evaluate(build: Path, tiny: Path, tmp_path: Path) -> None:
    from pipeline.train.evaluate import evaluate
    from pipeline.train.loop import TrainConfig, train

    out = tmp_path / "run"
    result = train(TrainConfig(build_dir=build, model=str(tiny), output_dir=out, streaming=True, batch_size=2,
                               max_steps=3, lr=1e-3, device="cpu", echo=False))
    assert result.steps == 3
    scores = evaluate(build, str(out), max_new_tokens=8, batch_size=2, device="cpu", output_dir=tmp_path / "eval")
    assert scores["n"] == 3 and scores["fe_n"] == 2 and scores["au_n"] == 2
    assert 0.0 <= scores["fe_accuracy"] <= 1.0 and 0.0 <= scores["au_f1"] <= 1.0
    predictions = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 3 and "answer" in json.loads(predictions[0])
    assert json.loads((tmp_path / "eval" / "scores.json").read_text())["n"] == 3


def test_lora_trains_adapters_only(build: Path, tiny: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from pipeline.train.loop import TrainConfig, train

    out = tmp_path / "lora"
    result = train(TrainConfig(build_dir=build, model=str(tiny), output_dir=out, limit=2, batch_size=2,
                               max_steps=2, lr=1e-3, lora=True, lora_r=4, device="cpu", echo=False))
    assert result.steps == 2
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "model.safetensors").is_file()  # merged


def test_cli_train_and_evaluate(build: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["train", str(build), "--model", "tiny", "-o", str(out), "--max-steps", "2", "--limit", "2",
                 "--batch-size", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "step 1/2 loss" in printed and "trained 2 steps" in printed
    assert (out / "base-model" / "tokenizer.json").is_file()
    assert main(["evaluate", str(build), "--model", str(out), "--max-new-tokens", "4", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3


def test_cli_help_and_missing_split(tmp_path: Path, capsys) -> None:
    for command in ("train", "evaluate"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "--model" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path), "--model", "unused"]) == 3  # no test split: missing file
    assert "no test split" in capsys.readouterr().err


def _pipeline_imports(module: str) -> list[str]:
    """The pipeline modules (and names of them) that `module`'s source imports anywhere, read, not run."""
    base = ROOT / Path(*module.split("."))
    path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())) if path else []:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("pipeline"):
            found += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("pipeline")]
    return found


def test_trainer_does_not_import_the_stages() -> None:
    """Every pipeline module the trainer's modules import, directly or not, at import time or on use."""
    seen: set[str] = set()
    todo = [f"pipeline.train.{p.stem}" for p in (ROOT / "pipeline" / "train").glob("*.py")]
    while todo:
        parts = todo.pop().split(".")
        for module in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):  # with the packages above it
            if module not in seen:
                seen.add(module)
                todo += _pipeline_imports(module)
    assert "pipeline.io.build_dir" in seen and "pipeline.train.loop" in seen
    bad = sorted(m for m in seen if m.startswith("pipeline.stages") or m == "pipeline.builder.run")
    assert not bad, bad


@pytest.mark.slow
def test_train_and_evaluate_on_a_real_build(tmp_path: Path, capsys) -> None:
    build = tmp_path / "build"
    assert main(["build", "--no-progress", "--no-validate", "--limit", "8", "-o", str(build)]) == 0
    out = tmp_path / "run"
    assert main(["train", str(build), "--model", "tiny", "-o", str(out), "--streaming", "--max-steps", "3",
                 "--batch-size", "2", "--lr", "1e-3", "--device", "cpu"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    assert main(["evaluate", str(build), "--model", str(out), "--limit", "4", "--max-new-tokens", "8",
                 "--device", "cpu", "--output", str(tmp_path / "eval")]) == 0
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["n"] == 4 and scores["split"] == "test"
