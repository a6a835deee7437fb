"""`fea inspect`: a plain-text summary of a build (accounting, distributions, a few sample conversations).

Reads only the columns it needs; image bytes are never loaded.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.report.stats import BuildStats, SampleRow, load_stats

TOP_AUS = 10


def inspect_build(out_dir: Path, samples: int = 3, seed: int = 0) -> str:
    """Summary of the build in `out_dir`; raises FileNotFoundError if it is not a build folder."""
    stats = load_stats(out_dir)
    lines = [f"build {stats.out_dir}", stats.accounting_line(), ""]
    lines += _rejects(stats)
    lines += _distribution("rows by split", stats.rows_by_split)
    lines += _distribution("rows by task", stats.rows_by_task)
    lines += _distribution("rows by emotion", stats.rows_by_emotion)
    lines += _distribution("faces by emotion", stats.faces_by_emotion())
    lines += _aus(stats)
    lines += _synergy(stats)
    picked = stats.pick_samples(samples, seed=seed) if stats.rows else []
    if picked:
        lines.append(f"{len(picked)} sample(s) (seed {seed}):")
        for i, row in enumerate(picked, 1):
            lines += _sample(i, row)
    return "\n".join(lines).rstrip() + "\n"


def _rejects(stats: BuildStats) -> list[str]:
    if not stats.rejects:
        return ["rejects: none", ""]
    lines = ["rejects by stage/reason (inputs rejected, reject records; example):"]
    for r in stats.rejects:
        lines.append(f"  {r.stage}/{r.reason}: {r.inputs} inputs, {r.records} records; e.g. {r.example}")
    return lines + [""]


def _distribution(title: str, counts: dict[str, int]) -> list[str]:
    total = sum(counts.values())
    if not total:
        return [f"{title}: none", ""]
    width = max(len(k) for k in counts)
    lines = [f"{title}:"]
    lines += [f"  {k:<{width}}  {v:>6}  {v / total:6.1%}" for k, v in counts.items()]
    return lines + [""]


def _aus(stats: BuildStats) -> list[str]:
    freq = sorted(((share, au) for au, share in stats.au_frequency().items() if share > 0), reverse=True)
    if not freq:
        return ["AUs present: none", ""]
    lines = [f"top AUs (share of {len(stats.faces)} faces with the AU present):"]
    lines += [f"  {au:<5} {share:6.1%}" for share, au in freq[:TOP_AUS]]
    return lines + [""]


def _synergy(stats: BuildStats) -> list[str]:
    mean, rate = stats.mean_consistency(), stats.conflict_rate()
    if mean is None or rate is None:
        return ["FE-AU consistency: no labelled faces", ""]
    return [f"FE-AU consistency: mean {mean:.3f} over {stats.scored_faces()} labelled faces; "
            f"conflict rate {rate:.1%}", ""]


def _sample(i: int, row: SampleRow) -> list[str]:
    consistency = "" if row.consistency is None else f", consistency {row.consistency:.2f}"
    conflict = ", CONFLICT" if row.conflict else ""
    lines = [
        f"--- sample {i}: {row.item} [{row.split}] task {row.task} ({row.template_id})",
        f"    emotion: {row.emotion}{consistency}{conflict}",
        f"    AUs present: {', '.join(row.au_present) or 'none'}",
    ]
    for turn in row.conversations:
        text = turn["content"].replace("\n", "\n      ")
        lines.append(f"    {turn['role']}: {text}")
    return lines + [""]
