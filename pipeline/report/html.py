"""Assemble the report: one HTML file, charts and faces inline as base64, no external assets.

This module gathers the numbers, charts and thumbnails; the page is the Jinja template
`report.html.j2` beside it, rendered with autoescape on: every string that comes from the data
(items, labels, conversations, reject details) is escaped, since corpora and templates are text we
do not control.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from PIL import Image

from pipeline.io.storage import make_dirs
from pipeline.report import plots
from pipeline.report.stats import BuildStats, SampleRow, load_stats

THUMBNAIL = 224
TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Any]]  # numbers are right-aligned, everything else shown as text


def write_report(out_dir: Path | str, output: Path | str | None = None, samples: int = 12) -> Path:
    """Write the self-contained HTML report of a build (a folder or URL) and return its path (default: in the
    build's `report/` folder)."""
    stats = load_stats(out_dir)
    path = Path(output) if output is not None else stats.out_dir / "report" / "report.html"
    make_dirs(path.parent)
    path.write_text(render_report(stats, samples), encoding="utf-8")
    return path


def render_report(stats: BuildStats, samples: int = 12) -> str:
    faces = len(stats.faces)
    return _environment().get_template(TEMPLATE).render(
        title=f"FEA build report: {stats.out_dir.name}",
        out_dir=str(stats.out_dir),
        summary=_summary(stats),
        rejects=_rejects(stats),
        emotions=_emotions(stats),
        au_frequency=_png(plots.share_chart(stats.au_frequency(), f"AU present (share of {faces} faces)",
                                            "% of faces")),
        emotion_au=_png(plots.heatmap(*stats.emotion_au_share(),
                                      "Share of faces of each emotion with the AU present (%)")),
        cooccurrence=_cooccurrence(stats),
        consistency=_consistency(stats),
        au_head=_au_head(stats),
        per_source=_per_source(stats),
        tasks=_tasks(stats),
        grounding=_grounding(stats),
        samples=_samples(stats, samples),
    )


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=True,  # the data is text we do not control
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["anchor"] = lambda title: "".join(ch if ch.isalnum() else "-" for ch in title.lower())
    env.filters["percent"] = lambda share: f"{share:.1%}"
    env.tests["numeric"] = lambda value: isinstance(value, int | float)
    return env


def _png(png: bytes | None) -> str | None:
    return None if png is None else base64.b64encode(png).decode("ascii")


def _counts_table(title: str, counts: dict[str, int]) -> Table:
    total = sum(counts.values())
    return Table([title, "count", "share"], [[k, v, f"{v / total:.1%}" if total else "-"] for k, v in counts.items()])


def _summary(stats: BuildStats) -> dict[str, Any]:
    c = stats.counts
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
    return {
        "accounting": stats.accounting_line(),
        "added_up": c.get("inputs", 0) == c.get("accepted_inputs", 0) + c.get("rejected_inputs", 0),
        "counts": Table(["count", "value"], counts),
        "splits": _counts_table("split", stats.rows_by_split),
        "versions": Table(["version", "value"], [[k, str(v)] for k, v in versions.items()]
                          + [[k, str(v)] for k, v in extra]),
    }


def _rejects(stats: BuildStats) -> Table | None:
    if not stats.rejects:
        return None
    return Table(["stage", "reason", "inputs", "records", "example"],
                 [[r.stage, r.reason, r.inputs, r.records, r.example] for r in stats.rejects])


def _emotions(stats: BuildStats) -> dict[str, Any]:
    faces = stats.faces_by_emotion()
    chart = plots.bar_chart(faces, f"Faces per emotion ({len(stats.faces)} faces)", "faces")
    rows = [[k, v, stats.rows_by_emotion.get(k, 0)] for k, v in faces.items()]
    return {"chart": _png(chart), "table": Table(["emotion", "faces", "rows"], rows)}


def _consistency(stats: BuildStats) -> dict[str, Any]:
    groups = stats.consistency_by_emotion()
    chart = plots.box_chart(groups, "FE-AU consistency per emotion (labelled faces)", "consistency")
    conflicts: dict[str, int] = {}
    for face in stats.faces.values():
        if face.consistency is not None and face.conflict:
            conflicts[face.emotion] = conflicts.get(face.emotion, 0) + 1
    rows = [[k, len(v), f"{sum(v) / len(v):.3f}", conflicts.get(k, 0)] for k, v in groups.items()]
    table = Table(["emotion", "faces", "mean consistency", "conflicts"], rows) if rows else None
    return {"chart": _png(chart), "table": table}


def _au_head(stats: BuildStats) -> dict[str, Any]:
    """The head in use, each AU's known accuracy, and the emotion probe: released AUs against raw blendshapes."""
    from pipeline.au.accuracy import ACCURACY_COLUMNS, LEVELS_NOTE, accuracy_cells, head_summary_lines
    from pipeline.au.probe import emotion_probe, read_faces

    head = stats.manifest.au_head
    shown = None
    if head:
        rows = [[au, head.get("origin", {}).get(au, "?"), *accuracy_cells(head.get("quality", {}).get(au, {}))]
                for au in stats.au_vocabulary]
        shown = {
            "name": head["name"], "version": head["version"], "method": str(head.get("method")),
            "fitted_on": head.get("fitted_on") or [],
            "quality_source": head.get("quality_source") or "not measured against FACS coding",
            "summary": [*head_summary_lines(head), LEVELS_NOTE],
            "table": Table(ACCURACY_COLUMNS, rows),
        }
    probe = emotion_probe(read_faces([stats.build]), repeats=2, max_faces=2000)
    if probe is not None:
        rows = [[k, f"{v:.1%}"] for k, v in probe["accuracy"].items()]
        probe = {**probe, "table": Table(["input", "probe accuracy"], rows)}
    return {"head": shown, "probe": probe}


def _cooccurrence(stats: BuildStats) -> str | None:
    codes, matrix = stats.au_cooccurrence()
    return _png(plots.heatmap(codes, codes, matrix, "Faces with the row AU that also show the column AU (%)"))


def _per_source(stats: BuildStats) -> dict[str, Any]:
    sources, codes, shares = stats.source_au_share()
    chart = plots.heatmap(sources, codes, shares, "AU base rate per source (% of the source's faces)")
    rows = [[src, emo, n, f"{mean:.3f}", f"{conflict:.1%}"]
            for src, emo, n, mean, conflict in stats.consistency_by_source()]
    table = Table(["source", "emotion", "labelled faces", "mean consistency", "conflict rate"], rows) if rows else None
    return {"chart": _png(chart), "table": table}


def _tasks(stats: BuildStats) -> dict[str, Any]:
    chart = plots.stacked_bar_chart(stats.tasks_by_split, f"Rows per task ({stats.rows} rows)", "rows")
    return {"chart": _png(chart), "table": _counts_table("task", stats.rows_by_task)}


def _grounding(stats: BuildStats) -> dict[str, Any]:
    """Where the assistant texts come from, the verifier's verdicts, and the LLM's hallucination rate."""
    c = stats.counts
    llm = stats.manifest.llm
    return {
        "llm": {"model": str(llm.get("model")), "mode": str(llm.get("mode")),
                "rate": llm.get("hallucination_rate")} if llm else None,
        "text_source": _counts_table("text source", c.get("rows_by_text_source", {})),
        "verdict": _counts_table("grounding verdict", c.get("rows_by_grounding_verdict", {})),
        "llm_status": _counts_table("LLM status", llm.get("rows_by_llm_status", {})) if llm else None,
    }


def _samples(stats: BuildStats, samples: int) -> list[dict[str, Any]]:
    picked = stats.pick_samples(samples, seed=0, with_images=True) if stats.rows and samples > 0 else []
    return [_card(row) for row in picked]


def _thumbnail(data: bytes | None) -> dict[str, str]:
    """{kind: jpeg, data: base64} for a readable image; otherwise why there is none."""
    if not data:
        return {"kind": "missing", "data": ""}
    try:
        image = Image.open(io.BytesIO(data))
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL, THUMBNAIL))
    except Exception as exc:  # noqa: BLE001 - an unreadable image is shown as such, not raised
        return {"kind": "unreadable", "data": str(exc)}
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88)
    return {"kind": "jpeg", "data": base64.b64encode(buf.getvalue()).decode("ascii")}


def _card(row: SampleRow) -> dict[str, Any]:
    return {
        "image": _thumbnail(row.image),
        "emotion": row.emotion,
        "consistency": "" if row.consistency is None else f" · consistency {row.consistency:.2f}",
        "conflict": row.conflict,
        "aus": ", ".join(row.au_present) or "none",
        "item": row.item,
        "split": row.split,
        "template": row.template_id or row.task,
        "turns": row.conversations,
    }
