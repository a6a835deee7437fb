"""A head's known accuracy in words and table cells: what the dataset card and the HTML report show per AU.

Reads the manifest's `au_head` (AUHead.summary()): per AU its held-out quality (fea calibrate), and the head's
summary (mean F1, AUs found on neutral faces, intensity agreement with coded FACS levels, and how much each may
differ for other people: 95% intervals from resampling the people they were measured on).
"""

from __future__ import annotations

from typing import Any

ACCURACY_COLUMNS = ["AU", "model", "held-out F1 (95% interval)", "precision", "recall", "on neutral faces",
                    "level error", "levels supported", "coded +/-", "note"]


LEVELS_NOTE = ("Intensity answers (au_intensity, and the intensity turn of multi_turn) state FACS levels only for "
               "the AUs whose levels are supported; the others are named as active with their intensity left "
               "ungraded. Other answers may still word an AU's strength from its 0-5 value.")


def _figure(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else ""


def interval_text(bounds: Any) -> str:
    """'lo-hi' of a 95% interval as head files keep it ([lo, hi]); '' where there is none (older heads, None)."""
    if not bounds or not all(isinstance(b, int | float) for b in bounds):
        return ""
    return f"{bounds[0]:.2f}-{bounds[1]:.2f}"


def accuracy_cells(q: dict[str, Any]) -> list[str]:
    """One AU's known accuracy as table cells (ACCURACY_COLUMNS after AU and model): held-out F1 (with its 95%
    interval over people, where the head file has one), precision,
    recall, the share of neutral faces it fires on, the mean error of its levels against coded FACS levels
    (A-E) where it finds the AU, whether those levels are supported (enough graded faces, error <= 1 level),
    coded support, and why the base head was kept."""
    f1 = _figure(q.get("f1")) or "not measured"
    if f1 != "not measured" and (interval := interval_text(q.get("f1_interval"))):
        f1 += f" ({interval})"  # 95% interval over people
    return [f1, _figure(q.get("precision")), _figure(q.get("recall")),
            f"{q['neutral_rate']:.1%}" if isinstance(q.get("neutral_rate"), int | float) else "",
            _figure(q.get("intensity_mae_found")), "yes" if q.get("intensity_supported") else "no",
            f"{q['positives']}/{q['negatives']}" if "positives" in q else "", q.get("kept_base", q.get("note", ""))]


def _interval(summary: dict[str, Any], name: str) -> str:
    """' (95% interval over people lo-hi)' where the head file has one for this figure (heads before it: '')."""
    intervals = summary.get("intervals") or {}
    interval = interval_text(intervals.get(name))
    return f" (95% interval over {intervals.get('over', 'people')} {interval})" if interval else ""


def head_summary_lines(head: dict[str, Any]) -> list[str]:
    """The head's held-out figures in sentences: mean F1, AUs found on neutral faces, intensity agreement, each
    with its interval over the people it was measured on where the head file has one."""
    summary = head.get("summary") or {}
    lines = []
    if summary.get("mean_f1") is not None:
        lines.append(f"Held-out mean F1 over {summary['aus_scored']} coded AUs: {summary['mean_f1']:.2f}"
                     f"{_interval(summary, 'mean_f1')}.")
    if "aus_per_neutral_face" in summary:
        lines.append(f"On {summary['neutral_faces']} neutral faces of held-out people: "
                     f"{summary['aus_per_neutral_face']:.2f} AUs per face{_interval(summary, 'aus_per_neutral_face')}, "
                     f"{summary['neutral_faces_without_au']:.0%} with none.")
    if "intensity_mae" in summary:
        lines.append(f"Intensity against {summary['graded_levels']} coded FACS levels (A-E = 1-5): mean absolute "
                     f"error {summary['intensity_mae']:.2f} levels{_interval(summary, 'intensity_mae')}, correlation "
                     f"{_figure(summary.get('intensity_correlation')) or 'n/a'}.")
    if head.get("terms"):
        lines.append(f"Terms: {head['terms']}.")
    return lines
