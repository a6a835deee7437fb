"""Release checks over a build's rows that a trainer relies on and GX cannot express simply.

Each returns a `Check` (name, success, detail), the result type of every check of pipeline.validate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from pipeline.grounding import disagreements
from pipeline.io.manifest import Counts

if TYPE_CHECKING:
    from pipeline.knowledge import Knowledge


class Check(NamedTuple):
    """One check of a validation: its name, whether it passed, and what was observed."""

    name: str
    success: bool
    detail: str


def clip(text: str, limit: int = 400) -> str:
    """A check's detail cut to `limit` characters for the report."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def answers_agree_with_labels(frame: pd.DataFrame, rows: int | None = None, knowledge: Knowledge | None = None
                              ) -> Check:
    """Every conversation's assistant turns are grounded in the labels (pipeline.grounding.verify).

    `rows`: re-read only this many answers, evenly spread over the frame (None: all of them). The
    verify stage has already judged every row (the suite requires each `grounding_verdict` to be
    grounded); a spread sample re-checks that judgement on the written files at a bounded cost.
    """
    total = len(frame)
    if rows is not None and total > rows:
        frame = frame.iloc[np.unique(np.linspace(0, total - 1, rows).astype(int))]
    scope = f"{len(frame)} answers" if len(frame) == total else f"{len(frame)} answers (spread sample of {total})"
    bad = []
    for row in frame[["sample_id", "conversations", "emotion", "au_present", "task"]].itertuples(index=False):
        # One line per turn, so turns never run into one sentence.
        answer = "\n".join(t["content"] for t in row.conversations if t["role"] == "assistant")
        emotion = row.emotion if isinstance(row.emotion, str) else None
        problems = disagreements(answer, emotion, list(row.au_present), row.task, knowledge)
        if problems:
            bad.append(f"{row.sample_id}: {problems[0]}")
    return Check("answer_label_agreement", not bad,
                 f"{len(bad)} of {scope} disagree with their labels" + (f", e.g. {bad[:2]}" if bad else ""))


def disjoint_splits(frame: pd.DataFrame, keys: list[str], name: str, noun: str) -> Check:
    """No value of `keys` (a face, a subject of a source) in more than one split; rows without one are skipped.
    The examples name the key's last column (the subject id, not its source)."""
    known = frame.dropna(subset=keys)
    spread = known.groupby(keys)["split"].nunique()
    leaked = spread[spread > 1]
    examples = [k[-1] if isinstance(k, tuple) else k for k in leaked.index[:3]]
    return Check(name, leaked.empty, f"{len(leaked)} of {len(spread)} {noun} in more than one split"
                 + (f", e.g. {examples}" if len(leaked) else ""))


def subjects_disjoint(frame: pd.DataFrame) -> Check:
    return disjoint_splits(frame, ["source", "subject_id"], "subject_disjoint_splits", "subjects")


def faces_disjoint(frame: pd.DataFrame) -> Check:
    return disjoint_splits(frame, ["face_id"], "no_face_leakage", "faces")


def duplicate_rate(frame: pd.DataFrame, maximum: float) -> Check:
    """Share of faces whose image bytes already appear as another face (same photo listed twice)."""
    faces = frame.drop_duplicates("face_id")
    if faces.empty:
        return Check("duplicate_rate", True, "no faces")
    per_image = faces.drop_duplicates(["image_sha256", "face_index"])
    rate = 1.0 - len(per_image) / len(faces)
    return Check("duplicate_rate", rate <= maximum,
                 f"{rate:.3f} of faces are exact duplicates (maximum {maximum:.3f})")


def no_class_vanishes(frame: pd.DataFrame, counts: Counts, min_ratio: float) -> Check:
    """Each labelled emotion keeps faces, at an acceptance rate not far below the build's overall rate."""
    inputs_by_emotion = counts.labelled_inputs_by_emotion
    if not inputs_by_emotion or not counts.inputs:
        return Check("no_class_vanishes", True, "no labelled inputs")
    overall = counts.accepted_inputs / counts.inputs
    faces = frame.drop_duplicates("face_id").groupby("emotion")["face_id"].count().to_dict()
    problems = []
    for emotion, n_inputs in sorted(inputs_by_emotion.items()):
        kept = faces.get(emotion, 0)
        if kept == 0:
            problems.append(f"{emotion}: 0 of {n_inputs} kept")
        elif n_inputs >= 10 and kept / n_inputs < min_ratio * overall:
            problems.append(f"{emotion}: {kept}/{n_inputs} kept vs overall rate {overall:.2f}")
    return Check("no_class_vanishes", not problems,
                 "; ".join(problems) or f"all {len(inputs_by_emotion)} labelled emotions kept")
