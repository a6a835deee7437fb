"""Assemble the report: one HTML file, charts and faces inline as base64, no external assets.

Every string that comes from the data (items, labels, conversations, reject details) goes through
html.escape: corpora and templates are text we do not control.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

from PIL import Image

from pipeline.io.storage import make_dirs
from pipeline.report import plots
from pipeline.report.stats import BuildStats, SampleRow, load_stats

THUMBNAIL = 224

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.accounting { font-size: 1.1em; font-weight: 600; } .bad { color: #b00020; }
.muted { color: #777; } img.plot { max-width: 100%; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em; font-size: 0.85em; }
.card img { width: 100%; max-width: 224px; display: block; margin: 0 auto 0.4em; border-radius: 4px; }
.turn { white-space: pre-wrap; margin: 0.3em 0; padding: 0.3em 0.5em; border-radius: 4px; }
.user { background: #eef3fb; } .assistant { background: #f1f8ee; }
.role { font-weight: 600; } .conflict { color: #b00020; font-weight: 600; }
"""
# Nothing may be fetched: images are data: URIs, styles inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_report(out_dir: Path | str, output: Path | str | None = None, samples: int = 12) -> Path:
    """Write the self-contained HTML report of a build (a folder or URL) and return its path (default: in the
    build's `report/` folder)."""
    stats = load_stats(out_dir)
    path = Path(output) if output is not None else stats.out_dir / "report" / "report.html"
    make_dirs(path.parent)
    path.write_text(render_report(stats, samples), encoding="utf-8")
    return path


def render_report(stats: BuildStats, samples: int = 12) -> str:
    title = f"FEA build report: {stats.out_dir.name}"
    sections = [
        _section("Summary", _summary(stats)),
        _section("Rejects", _rejects(stats)),
        _section("Emotion distribution", _emotions(stats)),
        _section("AU frequency", _plot(plots.share_chart(
            stats.au_frequency(), f"AU present (share of {len(stats.faces)} faces)", "% of faces"),
            "AU frequency per face")),
        _section("Emotion × AU", _plot(plots.heatmap(
            *stats.emotion_au_share(), "Share of faces of each emotion with the AU present (%)"),
            "emotion by AU heatmap")),
        _section("AU co-occurrence", _cooccurrence(stats)),
        _section("FE-AU consistency", _consistency(stats)),
        _section("AU head: known accuracy and information kept", _au_head(stats)),
        _section("Per source", _per_source(stats)),
        _section("Task mix", _tasks(stats)),
        _section("Text grounding", _grounding(stats)),
        _section("Sample faces", _samples(stats, samples)),
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{escape(str(stats.out_dir))}</p>',
        *sections,
        "</body></html>",
    ]) + "\n"


def _section(title: str, body: str) -> str:
    anchor = "".join(ch if ch.isalnum() else "-" for ch in title.lower())
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def _plot(png: bytes | None, alt: str = "chart") -> str:
    if png is None:
        return '<p class="muted">No data.</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{v}</td>' if isinstance(v, int | float) else f"<td>{escape(str(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _counts_table(title: str, counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return _table([title, "count", "share"],
                  [[k, v, f"{v / total:.1%}" if total else "-"] for k, v in counts.items()])


def _summary(stats: BuildStats) -> str:
    c = stats.counts
    added_up = c.get("inputs", 0) == c.get("accepted_inputs", 0) + c.get("rejected_inputs", 0)
    css = "accounting" + ("" if added_up else " bad")
    mean, rate = stats.mean_consistency(), stats.conflict_rate()
    synergy = ("no labelled faces" if mean is None or rate is None else
               f"mean {mean:.3f} over {stats.scored_faces()} labelled faces; conflict rate {rate:.1%}")
    counts = [["inputs", c.get("inputs", 0)], ["accepted inputs", c.get("accepted_inputs", 0)],
              ["rejected inputs", c.get("rejected_inputs", 0)], ["rows", stats.rows],
              ["faces", len(stats.faces)], ["FE-AU consistency", synergy]]
    versions = stats.manifest.versions
    extra = [["schema_version", stats.manifest.schema_version],
             ["crop_size", stats.manifest.crop_size or ""],
             ["build_seconds", stats.manifest.build_seconds]]
    return "\n".join([
        f'<p class="{css}">{escape(stats.accounting_line())}</p>',
        _table(["count", "value"], counts),
        _counts_table("split", stats.rows_by_split),
        _table(["version", "value"], [[k, str(v)] for k, v in versions.items()] + [[k, str(v)] for k, v in extra]),
    ])


def _rejects(stats: BuildStats) -> str:
    if not stats.rejects:
        return '<p class="muted">No rejects.</p>'
    rows = [[r.stage, r.reason, r.inputs, r.records, r.example] for r in stats.rejects]
    note = ('<p class="muted">inputs: inputs rejected for the reason (manifest accounting); records: reject '
            "records written (an accepted input may also reject some of its faces).</p>")
    return _table(["stage", "reason", "inputs", "records", "example"], rows) + note


def _emotions(stats: BuildStats) -> str:
    faces = stats.faces_by_emotion()
    chart = plots.bar_chart(faces, f"Faces per emotion ({len(stats.faces)} faces)", "faces")
    rows = [[k, v, stats.rows_by_emotion.get(k, 0)] for k, v in faces.items()]
    return _plot(chart, "faces per emotion") + _table(["emotion", "faces", "rows"], rows)


def _consistency(stats: BuildStats) -> str:
    groups = stats.consistency_by_emotion()
    chart = plots.box_chart(groups, "FE-AU consistency per emotion (labelled faces)", "consistency")
    conflicts: dict[str, int] = {}
    for face in stats.faces.values():
        if face.consistency is not None and face.conflict:
            conflicts[face.emotion] = conflicts.get(face.emotion, 0) + 1
    rows = [[k, len(v), f"{sum(v) / len(v):.3f}", conflicts.get(k, 0)] for k, v in groups.items()]
    table = _table(["emotion", "faces", "mean consistency", "conflicts"], rows) if rows else ""
    return _plot(chart, "FE-AU consistency per emotion") + table


def _au_head(stats: BuildStats) -> str:
    """The head in use, each AU's known accuracy, and the emotion probe: released AUs against raw blendshapes."""
    from pipeline.au.probe import emotion_probe, read_faces

    head = stats.manifest.au_head
    parts = []
    if head:
        fitted = f"; fitted on {', '.join(head['fitted_on'])}" if head.get("fitted_on") else ""
        parts.append(f"<p>AU head <code>{escape(head['name'])}@{escape(head['version'])}</code> "
                     f"({escape(str(head.get('method')))}{escape(fitted)}). Accuracy source: "
                     f"{escape(head.get('quality_source') or 'not measured against FACS coding')}.</p>")
        rows = []
        for au in stats.au_vocabulary:
            q = head.get("quality", {}).get(au, {})
            f1 = q.get("f1")
            rows.append([au, head.get("origin", {}).get(au, "?"),
                         "not measured" if f1 is None else f"{f1:.2f}",
                         f"{q['positives']}/{q['negatives']}" if "positives" in q else "",
                         q.get("kept_base", q.get("note", ""))])
        parts.append(_table(["AU", "model", "held-out F1", "coded +/-", "note"], rows))
    probe = emotion_probe(read_faces([stats.build]), repeats=2, max_faces=2000)
    if probe is None:
        parts.append('<p class="muted">Too few labelled faces per emotion for the emotion probe.</p>')
    else:
        parts.append(f"<p>Emotion probe on {probe['faces']} labelled faces ({probe['emotions']} emotions, "
                     f"{probe['folds']}-fold cross-validated logistic regression, majority rate "
                     f"{probe['majority_rate']:.1%}): how much emotion information each input carries. "
                     "An AU vector below the blendshapes it is computed from loses information.</p>")
        parts.append(_table(["input", "probe accuracy"], [[k, f"{v:.1%}"] for k, v in probe["accuracy"].items()]))
    return "\n".join(parts)


def _cooccurrence(stats: BuildStats) -> str:
    codes, matrix = stats.au_cooccurrence()
    return _plot(plots.heatmap(codes, codes, matrix, "Faces with the row AU that also show the column AU (%)"),
                 "AU co-occurrence heatmap")


def _per_source(stats: BuildStats) -> str:
    sources, codes, shares = stats.source_au_share()
    chart = plots.heatmap(sources, codes, shares, "AU base rate per source (% of the source's faces)")
    rows = [[src, emo, n, f"{mean:.3f}", f"{conflict:.1%}"]
            for src, emo, n, mean, conflict in stats.consistency_by_source()]
    table = _table(["source", "emotion", "labelled faces", "mean consistency", "conflict rate"], rows) if rows else ""
    return _plot(chart, "AU base rate per source") + table


def _tasks(stats: BuildStats) -> str:
    chart = plots.stacked_bar_chart(stats.tasks_by_split, f"Rows per task ({stats.rows} rows)", "rows")
    return _plot(chart, "rows per task and split") + _counts_table("task", stats.rows_by_task)


def _grounding(stats: BuildStats) -> str:
    """Where the assistant texts come from, the verifier's verdicts, and the LLM's hallucination rate."""
    c = stats.counts
    parts = [_counts_table("text source", c.get("rows_by_text_source", {})),
             _counts_table("grounding verdict", c.get("rows_by_grounding_verdict", {}))]
    llm = stats.manifest.llm
    if not llm:
        parts.insert(0, '<p class="muted">LLM stage off: every text is rendered from templates and '
                        "self-checked by the grounding verifier.</p>")
        return "\n".join(parts)
    rate = llm.get("hallucination_rate")
    parts.insert(0, f"<p>LLM {escape(str(llm.get('model')))} ({escape(str(llm.get('mode')))}): hallucination rate "
                    f"<b>{'n/a' if rate is None else f'{rate:.1%}'}</b> of the LLM texts received "
                    "(each discarded for its template text).</p>")
    parts.append(_counts_table("LLM status", llm.get("rows_by_llm_status", {})))
    return "\n".join(parts)


def _samples(stats: BuildStats, samples: int) -> str:
    picked = stats.pick_samples(samples, seed=0, with_images=True) if stats.rows and samples > 0 else []
    if not picked:
        return '<p class="muted">No rows.</p>'
    return '<div class="grid">\n' + "\n".join(_card(row) for row in picked) + "\n</div>"


def _thumbnail(data: bytes | None) -> str:
    if not data:
        return '<p class="conflict">no image bytes</p>'
    try:
        image = Image.open(io.BytesIO(data))
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL, THUMBNAIL))
    except Exception as exc:  # noqa: BLE001 - an unreadable image is shown as such, not raised
        return f'<p class="conflict">unreadable image: {escape(str(exc))}</p>'
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88)
    return f'<img alt="face" src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def _card(row: SampleRow) -> str:
    consistency = "" if row.consistency is None else f" · consistency {row.consistency:.2f}"
    conflict = ' <span class="conflict">conflict</span>' if row.conflict else ""
    turns = "".join(
        f'<div class="turn {escape(t["role"])}"><span class="role">{escape(t["role"])}:</span> '
        f"{escape(t['content'])}</div>"
        for t in row.conversations
    )
    return (
        '<div class="card">'
        f"{_thumbnail(row.image)}"
        f"<div><b>{escape(row.emotion)}</b>{escape(consistency)}{conflict}</div>"
        f"<div>AUs: {escape(', '.join(row.au_present) or 'none')}</div>"
        f'<div class="muted">{escape(row.item)} · {escape(row.split)} · {escape(row.template_id or row.task)}</div>'
        f"{turns}</div>"
    )
