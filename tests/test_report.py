"""`fea inspect` and `fea report` on a small synthetic build written with pyarrow (no pipeline run)."""

from __future__ import annotations

import io
import json
import re
from html import unescape
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.io.schema import arrow_schema
from pipeline.report import write_report
from pipeline.report.stats import load_stats
from pipeline.report.text import inspect_build

VOCAB = ["AU1", "AU2", "AU4", "AU6", "AU12", "AU25"]
SECTIONS = ["Summary", "Rejects", "Emotion distribution", "AU frequency", "Emotion × AU", "AU co-occurrence",
            "FE-AU consistency", "Per source", "Task mix", "Text grounding", "Sample faces"]
CHARTS = 7  # emotions, AU frequency, emotion x AU, co-occurrence, consistency, per-source AU rates, task mix
EVIL = 'Is this <script>alert("x")</script> a smile?'
CSP = ("""<meta http-equiv="Content-Security-Policy" """
       """content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">""")


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG")
    return buf.getvalue()


def _row(face: str, item: str, split: str, emotion: str | None, aus: list[str], task: str,
         question: str, answer: str, consistency: float | None = None, conflict: bool = False,
         source: str = "synthetic") -> dict:
    return {
        "sample_id": f"{face}-{task}", "face_id": face, "source": source, "source_item": item,
        "split": split, "frame_index": None, "emotion": emotion,
        "au_intensity": [2.0 if code in aus else 0.0 for code in VOCAB], "au_present": aus,
        "fe_au_consistency": consistency, "fe_au_conflict": conflict, "task": task,
        "template_id": f"{task}/q0a0@1",
        "conversations": [{"role": "user", "content": f"<image>\n{question}"},
                          {"role": "assistant", "content": answer}],
        "image": {"bytes": _jpeg((40 * len(face), 120, 90)), "path": f"{face}.jpg"},
    }


def _write_build(out: Path, rows: list[dict], rejects: list[dict], inputs: int) -> Path:
    data, rej = out / "data", out / "rejects"
    data.mkdir(parents=True)
    rej.mkdir()
    splits = sorted({r["split"] for r in rows})
    for split in splits:
        part = [r for r in rows if r["split"] == split]
        pq.write_table(pa.Table.from_pylist(part, schema=arrow_schema("record")),
                       data / f"{split}-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rejects, schema=arrow_schema("reject")), rej / "rejects-00000-of-00001.parquet")
    by_reason: dict[str, int] = {}
    for r in rejects:
        by_reason[f"{r['stage']}/{r['reason']}"] = by_reason.get(f"{r['stage']}/{r['reason']}", 0) + 1
    accepted = len({r["source_item"] for r in rows})
    manifest = {
        "schema_version": "1.0.0",
        "counts": {
            "inputs": inputs, "accepted_inputs": accepted, "rejected_inputs": inputs - accepted,
            "rejected_by_reason": by_reason, "face_rejects_of_accepted_inputs": {}, "rows": len(rows),
            "faces": len({r["face_id"] for r in rows}),
        },
        "stage_counters": {}, "versions": {"pipeline_version": "0.1.0", "params_hash": "abc"},
        "au_vocabulary": VOCAB, "crop_size": 32, "splits": splits,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture
def build(tmp_path: Path) -> Path:
    rows = [
        _row("faceA", "a.jpg", "train", "happiness", ["AU6", "AU12"], "fe_recognition",
             "What emotion is shown?", "Happiness.", 1.0),
        _row("faceA", "a.jpg", "train", "happiness", ["AU6", "AU12"], "au_recognition",
             "Which AUs are active?", "AU6 and AU12.", 1.0),
        _row("faceB", "b.jpg", "train", "anger", ["AU12"], "fe_recognition",
             "What emotion is shown?", "Anger.", 0.0, True),
        _row("faceC", "c.jpg", "test", None, ["AU1", "AU2"], "au_recognition", EVIL, "AU1 and AU2.",
             source="other"),
    ]
    rejects = [
        {"source": "synthetic", "source_item": "d.jpg", "stage": "detect", "reason": "no_face", "detail": ""},
        {"source": "synthetic", "source_item": "e.jpg", "stage": "decode", "reason": "unreadable",
         "detail": "truncated <file>"},
    ]
    return _write_build(tmp_path / "build", rows, rejects, inputs=5)


def test_stats_are_per_face(build: Path) -> None:
    stats = load_stats(build)
    assert stats.rows == 4 and len(stats.faces) == 3
    freq = stats.au_frequency()
    assert list(freq) == VOCAB
    assert freq["AU12"] == pytest.approx(2 / 3)  # faces A and B, not 3 rows of 4
    assert freq["AU6"] == pytest.approx(1 / 3)
    emotions, codes, share = stats.emotion_au_share()
    assert emotions == ["anger", "happiness", "(unlabelled)"]
    assert share[emotions.index("happiness")][codes.index("AU6")] == 1.0
    assert stats.mean_consistency() == pytest.approx(0.5)
    assert stats.conflict_rate() == pytest.approx(0.5)


def test_cooccurrence_and_per_source(build: Path) -> None:
    stats = load_stats(build)
    codes, matrix = stats.au_cooccurrence()
    assert codes == ["AU1", "AU2", "AU6", "AU12"]  # never-present AUs left out
    m = {(a, b): matrix[i][j] for i, a in enumerate(codes) for j, b in enumerate(codes)}
    assert m[("AU6", "AU12")] == 1.0  # every face with AU6 has AU12 (face A)
    assert m[("AU12", "AU6")] == 0.5  # faces A and B have AU12, only A has AU6
    assert m[("AU1", "AU12")] == 0.0 and all(m[(a, a)] == 1.0 for a in codes)
    sources, au_codes, shares = stats.source_au_share()
    assert sources == ["other", "synthetic"]
    assert shares[0][au_codes.index("AU1")] == 1.0 and shares[1][au_codes.index("AU1")] == 0.0
    assert shares[1][au_codes.index("AU12")] == 1.0
    assert stats.consistency_by_source() == [("synthetic", "anger", 1, 0.0, 1.0),
                                             ("synthetic", "happiness", 1, 1.0, 0.0)]


def test_inspect_summary(build: Path) -> None:
    text = inspect_build(build, samples=10, seed=1)
    assert "inputs 5 = 3 accepted + 2 rejected" in text
    assert "detect/no_face: 1 inputs" in text and "decode/unreadable" in text
    assert "AU12   66.7%" in text
    assert "mean 0.500 over 2 labelled faces; conflict rate 50.0%" in text
    for turn in ("Happiness.", "Anger.", "AU6 and AU12.", EVIL):
        assert turn in text  # plain text: shown as is
    assert text.count("--- sample") == 4


def test_inspect_is_seeded_and_never_reads_images(build: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = pq.read_table

    def read_table(path, columns=None, **kwargs):
        assert columns is not None and "image" not in columns
        return real(path, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", read_table)
    assert inspect_build(build, samples=2, seed=3) == inspect_build(build, samples=2, seed=3)
    assert inspect_build(build, samples=0).count("--- sample") == 0


def test_not_a_build(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a build"):
        inspect_build(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a build"):
        write_report(tmp_path)


def test_report(build: Path) -> None:
    path = write_report(build, samples=3)
    assert path == build / "report" / "report.html"
    html = path.read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert len(re.findall(r"<img\b", html)) >= CHARTS + 3
    assert html.count("data:image/jpeg;base64,") == 3  # the sample faces, decoded and inlined
    assert "http://" not in html and "https://" not in html
    assert re.search(r"\b(src|href)=\"(?!data:)", html) is None
    assert CSP in html  # nothing may be fetched, nothing run
    assert "<script" not in html and 'alert("x")' not in html  # corpus text escaped (tags and quotes) ...
    assert EVIL in unescape(html)  # ... and shown as the text it is
    assert "truncated &lt;file&gt;" in html
    assert "inputs 5 = 3 accepted + 2 rejected" in html


def test_report_custom_output_and_all_samples(build: Path, tmp_path: Path) -> None:
    path = write_report(build, tmp_path / "elsewhere" / "r.html", samples=50)
    assert path == tmp_path / "elsewhere" / "r.html"
    assert path.read_text().count("data:image/jpeg;base64,") == 4  # every row, distinct faces first


def test_empty_build(tmp_path: Path) -> None:
    rejects = [{"source": "synthetic", "source_item": f"{i}.jpg", "stage": "detect", "reason": "no_face"}
               for i in range(2)]
    out = _write_build(tmp_path / "empty", [], rejects, inputs=2)
    text = inspect_build(out)
    assert "inputs 2 = 0 accepted + 2 rejected; 0 rows from 0 faces" in text
    assert "--- sample" not in text
    html = write_report(out).read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert "No rows." in html and "<img" not in html


def test_report_escapes_manifest_text(build: Path) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["au_head"] = {"name": "<b>head</b>", "version": "1", "method": "m", "fitted_on": ["<i>x</i>"],
                           "quality": {"AU6": {"note": "<img src=x>"}}}
    manifest["llm"] = {"model": "<script>m</script>", "mode": "rewrite", "hallucination_rate": 0.25,
                       "rows_by_llm_status": {"<u>ok</u>": 4}}
    (build / "manifest.json").write_text(json.dumps(manifest))
    html = write_report(build, samples=0).read_text()
    assert "<b>head" not in html and "<i>x" not in html and "<img src=x" not in html and "<script" not in html
    assert "<u>" not in html
    for text in ("<b>head</b>@1", "fitted on <i>x</i>", "<img src=x>", "LLM <script>m</script> (rewrite)"):
        assert text in unescape(html)
    assert "hallucination rate <b>25.0%</b>" in html
