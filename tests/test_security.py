"""Nothing leaked: templates cannot reach files, the environment or Python internals; corpus text is data,
never a template and never markup; no path from a corpus decides where a build writes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jinja2.sandbox import SandboxedEnvironment
from PIL import Image

from pipeline.cli import main
from pipeline.config import RenderConfig
from pipeline.domain.data import PROJECT_ROOT
from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.domain.vocabulary import load_au_vocabulary
from pipeline.report import write_report
from pipeline.sources.base import Source, SourceError
from pipeline.sources.demo import demo_corpus_dir
from pipeline.sources.folder_csv import CsvSource
from pipeline.stages.render import RenderStage
from pipeline.templating import TemplateError, TemplateLibrary, make_environment

TEMPLATES = PROJECT_ROOT / "templates"
VOCAB_PATH = PROJECT_ROOT / "schemas" / "au_vocabulary.csv"
HEX_NAME = re.compile(r"^[0-9a-f]{20}\.jpg$")
# Corpus text that would do something if it were evaluated as a template or written as markup.
TEMPLATE_TEXT = "{{ 7*7 }} {{ 111*111 }}"
MARKUP = '</script><script>alert("x")</script>'
EVALUATED = ("49", "12321")

PAYLOADS = [
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% include '/etc/passwd' %}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ lipsum.__globals__.os.popen('id').read() }}",
    "{{ emotion|attr('__class__') }}",
    "{{ aus['__class__'] }}",
    "{% import '/etc/passwd' as p %}{{ emotion }}",
    "{% from '/etc/passwd' import x %}{{ emotion }}",
    "{% extends '/etc/passwd' %}",
    "{{ range.__self__ }}",
    "{{ namespace._Namespace__attrs }}",
]


def write_template(folder: Path, answer: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "task": "probe",
        "version": "1",
        "requires": ["emotion"],
        "questions": ["Q1?", "Q2?", "Q3?", "Q4?", "Q5?", "Q6?"],
        "answers": ["A {{ emotion }}.", "B {{ emotion }}.", "C {{ emotion }}.", answer],
    }
    (folder / "probe.yaml").write_text(json.dumps(data))  # JSON is valid YAML
    return folder


# ----------------------------------------------------------------------------- templates


@pytest.mark.parametrize("payload", PAYLOADS)
def test_escaping_template_fails_at_load(tmp_path: Path, payload: str) -> None:
    with pytest.raises(TemplateError, match=r"probe\.yaml: answers\[3\]"):
        TemplateLibrary(write_template(tmp_path, payload))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_escape_in_a_branch_no_example_reaches_fails_at_load(tmp_path: Path, payload: str) -> None:
    """`contempt` is in none of the load-time example contexts: the check must not depend on reaching it."""
    answer = f"{{% if emotion == 'contempt' %}}{payload}{{% else %}}It is {{{{ emotion }}}}.{{% endif %}}"
    with pytest.raises(TemplateError, match=r"probe\.yaml: answers\[3\]"):
        TemplateLibrary(write_template(tmp_path, answer))


def test_environment_is_a_sandbox_without_a_loader() -> None:
    env = make_environment()
    assert isinstance(env, SandboxedEnvironment)
    assert env.loader is None
    assert TemplateLibrary(TEMPLATES).env.loader is None
    for source in ("{% include '/etc/passwd' %}", "{% import '/etc/hostname' as h %}"):
        with pytest.raises(Exception) as raised:  # noqa: PT011 - any refusal; never the file's text
            env.from_string(source).render()
        assert "root:" not in str(raised.value)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sandbox_refuses_at_render_time_too(payload: str) -> None:
    """Second line of defence: the sandbox itself, whatever the load-time check lets through."""
    env = make_environment()
    try:
        text = env.from_string(payload).render(emotion="happiness", aus=[])
    except Exception as exc:  # noqa: BLE001 - refused: good
        assert "root:" not in str(exc) and "PATH" not in str(exc)
    else:
        assert "root:" not in text and "environ" not in text and "<class" not in text and "uid=" not in text


def test_real_templates_pass_the_static_check() -> None:
    library = TemplateLibrary(TEMPLATES)
    assert library.tasks  # loading them ran the check on every phrasing


# ----------------------------------------------------------------------------- corpus text is data


def hostile_sample(emotion: str | None) -> Sample:
    vocabulary = load_au_vocabulary(VOCAB_PATH)
    intensity = np.zeros(len(vocabulary), dtype=np.float32)
    intensity[[row["code"] for row in vocabulary].index("AU12")] = 3.0
    item = SourceItem("hostile", f"images/{TEMPLATE_TEXT} {{% raw %}}.jpg", f"/nowhere/{TEMPLATE_TEXT}.jpg",
                      emotion=emotion, emotion_raw=f"{TEMPLATE_TEXT} {MARKUP}", subject_id=TEMPLATE_TEXT,
                      split=None, meta={"note": TEMPLATE_TEXT})
    return Sample(item, image_sha256="ab" * 32, au_intensity=intensity, au_present=["AU12"],
                  evidence_aus=["AU12"] if emotion == "happiness" else [], fe_au_consistency=1.0)


@pytest.mark.parametrize("emotion", ["happiness", None])
def test_metadata_is_never_evaluated_as_a_template(emotion: str | None) -> None:
    mix = dict.fromkeys(["fe_recognition", "au_recognition", "au_to_fe_reasoning", "description"], 1.0)
    stage = RenderStage(RenderConfig(mix=mix, tasks_per_face=4), TemplateLibrary(TEMPLATES))
    stage.setup()
    outputs = list(stage.run(hostile_sample(emotion)))
    assert outputs and not any(isinstance(o, Reject) for o in outputs)
    for inst in outputs:
        text = "\n".join(turn["content"] for turn in inst.conversations)
        assert not any(n in text for n in EVALUATED), text
        assert "{{" not in text and "{%" not in text and "<script" not in text


# ----------------------------------------------------------------------------- paths from a corpus


def csv_corpus(root: Path, rows: str, files: list[str]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in files:
        Image.new("RGB", (8, 8), "gray").save(root / "images" / name)
    (root / "labels.csv").write_text(rows, encoding="utf-8")
    return root


@pytest.mark.parametrize("rel", ["../../outside.jpg", "../../../etc/passwd", "/etc/passwd", "sub/../../../x.jpg"])
def test_path_escaping_the_corpus_root_is_rejected(tmp_path: Path, rel: str) -> None:
    (tmp_path / "outside.jpg").write_bytes(b"x")
    root = csv_corpus(tmp_path / "corpus", f"image,emotion\n{rel},happy\n", [])
    (out,) = CsvSource("c", root, {"image_dir": "images"}).items()
    assert isinstance(out, Reject) and (out.stage, out.reason) == ("read", "path_outside_root"), out


@pytest.mark.parametrize("split", ["../../escaped", "a/b", "..", "train/../../x", "/tmp/x", "tr ain", ""])
def test_split_names_from_a_corpus_are_never_paths(tmp_path: Path, split: str) -> None:
    root = csv_corpus(tmp_path / "corpus", f"image,emotion,split\na.jpg,happy,{split}\n", ["a.jpg"])
    (out,) = CsvSource("c", root, {"image_dir": "images", "split_column": "split"}).checked_items()
    if split == "":
        assert isinstance(out, SourceItem) and out.split is None  # empty cell: no official split
    else:
        assert isinstance(out, Reject) and (out.stage, out.reason) == ("read", "invalid_split"), out


@pytest.mark.parametrize("split", ["train", "test", "validation", "train.extra", "fold_1"])
def test_ordinary_split_names_pass(tmp_path: Path, split: str) -> None:
    root = csv_corpus(tmp_path / "corpus", f"image,emotion,split\na.jpg,happy,{split}\n", ["a.jpg"])
    (out,) = CsvSource("c", root, {"image_dir": "images", "split_column": "split"}).items()
    assert isinstance(out, SourceItem) and out.split == split


class ListedSource(Source):
    """Any adapter (here one defined outside the package) whose corpus names its own splits."""

    kind = "listed"

    def items(self):
        for i, split in enumerate(self.options["splits"]):
            yield SourceItem(self.name, f"item{i}.jpg", f"/nowhere/item{i}.jpg", split=split, frame_index=i)


def test_every_adapter_gets_the_split_guard() -> None:
    splits = ["train", "../../x", None, "a/b", "validation"]
    out = list(ListedSource("listed", None, {"splits": splits}).checked_items())
    assert [type(o).__name__ for o in out] == ["SourceItem", "Reject", "SourceItem", "Reject", "SourceItem"]
    rejects = [o for o in out if isinstance(o, Reject)]
    assert [(r.stage, r.reason, r.source_item, r.frame_index) for r in rejects] == [
        ("read", "invalid_split", "item1.jpg", 1), ("read", "invalid_split", "item3.jpg", 3)]

    class Child(ListedSource):  # an adapter built on another one is still guarded
        def items(self):
            yield from super().items()

    assert [type(o).__name__ for o in Child("c", None, {"splits": splits}).checked_items()] == [
        type(o).__name__ for o in out]


# ----------------------------------------------------------------------------- a hostile corpus, built


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory) -> tuple[Path, Path, set[str]]:
    try:
        demo = demo_corpus_dir()
    except SourceError as exc:
        pytest.skip(f"demo corpus unavailable: {exc}")
    top = tmp_path_factory.mktemp("hostile")
    base = top / "a" / "b" / "c"  # room above the build for a path that climbs out of it
    root = base / "corpora" / "hostile"
    (root / "images" / "sub").mkdir(parents=True)
    face = Image.open(demo / "single_face.jpg").convert("RGB")
    face_name = f"{TEMPLATE_TEXT} <img src=x onerror=alert(1)>.jpg"
    face.save(root / "images" / face_name, quality=90)
    face.save(root / "images" / "sub" / "plain.jpg", quality=85)
    face.save(root / "images" / "escape.jpg", quality=80)
    face.save(root / "images" / "markup.jpg", quality=75)
    face.save(base / "outside.jpg")
    rows = [
        {"image": face_name, "emotion": TEMPLATE_TEXT, "split": ""},  # label_map: happiness
        {"image": "sub/plain.jpg", "emotion": "happy", "split": "test"},
        {"image": "escape.jpg", "emotion": "happy", "split": "../../../../escaped"},
        {"image": "markup.jpg", "emotion": MARKUP, "split": ""},  # unknown label: reject detail holds it
        {"image": "../../outside.jpg", "emotion": "happy", "split": ""},
    ]
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "emotion", "split"])
        writer.writeheader()
        writer.writerows(rows)
    source = {"name": "hostile", "kind": "csv", "path": str(root),
              "options": {"image_dir": "images", "split_column": "split", "label_map": {TEMPLATE_TEXT: "happiness"}}}
    out = base / "builds" / "out"
    before = tree(top)
    # Dedup off: the hostile files are copies of one face, and each must reach the rows on its own.
    code = main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory",
                 "--set", "sources=" + json.dumps([source]), "--set", "dedup.enabled=false", "-o", str(out)])
    assert code == 0
    return top, out, before


def read_folder(folder: Path) -> list[dict]:
    tables = [pq.read_table(f) for f in sorted(folder.glob("*.parquet"))]
    return pa.concat_tables(tables).to_pylist() if tables else []


@pytest.mark.slow
def test_build_writes_only_inside_its_output_folder(hostile_build) -> None:
    top, out, before = hostile_build
    inside = out.relative_to(top).as_posix()
    added = {p for p in tree(top) - before if p != inside and not p.startswith(inside + "/")}
    assert added == {"a/b/c/builds"}, added  # nothing beside the output folder (no .partial left either)
    data = {p.name for p in (out / "data").iterdir()}
    assert all(re.fullmatch(r"(train|test)-\d{5}-of-\d{5}\.parquet", name) for name in data), data
    for path in out.rglob("*"):
        assert path.resolve().is_relative_to(out.resolve())
    rejects = {(r["source_item"], r["stage"], r["reason"]) for r in read_folder(out / "rejects")}
    assert rejects == {
        ("images/escape.jpg", "read", "invalid_split"),
        ("images/markup.jpg", "read", "unknown_label"),
        ("../../outside.jpg", "read", "path_outside_root"),
    }


@pytest.mark.slow
def test_row_ids_and_image_paths_are_plain_names(hostile_build) -> None:
    _, out, _ = hostile_build
    rows = read_folder(out / "data")
    assert {r["source_item"] for r in rows} == {f"images/{TEMPLATE_TEXT} <img src=x onerror=alert(1)>.jpg",
                                                "images/sub/plain.jpg"}
    for row in rows:
        assert HEX_NAME.fullmatch(row["image"]["path"]), row["image"]["path"]
        assert row["image"]["path"] == f"{row['face_id']}.jpg"
        assert re.fullmatch(r"[0-9a-f]{24}", row["sample_id"])
        assert re.fullmatch(r"[0-9a-f]{20}", row["face_id"])


@pytest.mark.slow
def test_corpus_text_is_stored_verbatim_and_never_rendered(hostile_build) -> None:
    _, out, _ = hostile_build
    rows = read_folder(out / "data")
    hostile = [r for r in rows if r["source_item"].startswith(f"images/{TEMPLATE_TEXT}")]
    assert hostile and all(r["emotion_raw"] == TEMPLATE_TEXT and r["emotion"] == "happiness" for r in hostile)
    for row in rows:
        text = "\n".join(turn["content"] for turn in row["conversations"])
        assert not any(n in text for n in EVALUATED), text
        assert "{{" not in text and "<img" not in text and "<script" not in text


@pytest.mark.slow
def test_report_escapes_corpus_text(hostile_build, tmp_path: Path) -> None:
    _, out, _ = hostile_build
    html = write_report(out, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the file name, shown as text
    assert "&lt;/script&gt;&lt;script&gt;" in html  # the unknown label, in the rejects table
    assert TEMPLATE_TEXT in html  # shown as the text it is
