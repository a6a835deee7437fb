"""FEABench-style scoring of generated answers: facial-expression (FE) accuracy and AU F1.

FE: the predicted emotion is the first canonical emotion word (emotions.json) in the
answer; accuracy over rows of the FE tasks that have a gold label. AU: the predicted AUs are the
codes matching `\\bAU(\\d+)\\b`; micro precision / recall / F1 against `au_present` over rows of the
AU tasks (plus per-AU F1). The task sets follow what each task's reference answers contain.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

# multi_turn is scored on its first turn (which AUs are active), like every row at evaluation.
FE_TASKS = frozenset({"fe_recognition", "fe_multiple_choice", "au_to_fe_reasoning"})
AU_TASKS = frozenset({"au_recognition", "description", "au_to_fe_reasoning", "multi_turn"})
AU_CODE = re.compile(r"\bAU(\d+)\b")


@cache
def _emotion_pattern() -> re.Pattern[str]:
    from pipeline.knowledge import packaged_emotions

    return re.compile(r"\b(" + "|".join(packaged_emotions().canonical) + r")\b", re.IGNORECASE)


def parse_emotion(answer: str) -> str | None:
    """The first canonical emotion word in `answer` (lower case), or None."""
    match = _emotion_pattern().search(answer or "")
    return match.group(1).lower() if match else None


def parse_aus(answer: str) -> set[str]:
    """The AU codes named in `answer`, e.g. {"AU6", "AU12"}."""
    return {f"AU{int(n)}" for n in AU_CODE.findall(answer or "")}


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def score_answers(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Score generated answers. Each item: `answer`, `task`, gold `emotion` (or None), gold `au_present`.

    Returns fe_accuracy (None if no FE row), fe_n, au_precision / au_recall / au_f1 (micro; None if no AU
    row), au_n, and au_f1_per_au (per gold-or-predicted AU code).
    """
    fe_n = fe_correct = au_n = 0
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for item in items:
        task, answer = item.get("task"), item.get("answer") or ""
        if task in FE_TASKS and item.get("emotion"):
            fe_n += 1
            fe_correct += parse_emotion(answer) == item["emotion"]
        if task in AU_TASKS:
            au_n += 1
            gold, predicted = set(item.get("au_present") or []), parse_aus(answer)
            tp.update(gold & predicted)
            fp.update(predicted - gold)
            fn.update(gold - predicted)
    all_tp, all_fp, all_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    codes = sorted(set(tp) | set(fp) | set(fn), key=lambda c: int(c[2:]))
    return {
        "fe_accuracy": fe_correct / fe_n if fe_n else None,
        "fe_n": fe_n,
        "au_precision": (all_tp / (all_tp + all_fp) if all_tp + all_fp else 0.0) if au_n else None,
        "au_recall": (all_tp / (all_tp + all_fn) if all_tp + all_fn else 0.0) if au_n else None,
        "au_f1": _f1(all_tp, all_fp, all_fn) if au_n else None,
        "au_n": au_n,
        "au_f1_per_au": {c: _f1(tp[c], fp[c], fn[c]) for c in codes},
    }
