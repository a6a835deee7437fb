"""Question subjects picked in Python for the task families that ask about something specific.

A multiple-choice question needs its options, a yes/no question its subject, an intensity question
the AU it asks about. Jinja only phrases them: the choice is made here, from the labels and a key
(seed | face_id | task), so a rebuild asks the same questions and the answers are right by
construction. Each pick draws from its own stream (key + purpose), so adding one never shifts
another.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

LETTERS = "ABCD"


@dataclass(frozen=True)
class Probes:
    mc_options: tuple[str, ...]  # emotions in option order (A, B, ...); empty for an unlabelled face
    probe_au: str  # the AU code an `au_verification` question asks about
    probe_emotion: str | None  # the emotion an `emotion_verification` question asks about
    focus_au: str | None  # the present AU an `au_intensity` question asks about; None: ask for all


def _rng(key: str, purpose: str) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{key}#{purpose}".encode()).hexdigest()[:16], 16))


def mc_options(label: str | None, emotions: Sequence[str], key: str, n_options: int = len(LETTERS)) -> tuple[str, ...]:
    """The label and `n_options - 1` other emotions, shuffled: the label's letter is uniform."""
    if label is None:
        return ()
    if label not in emotions:
        raise ValueError(f"label {label!r} is not among the emotions {list(emotions)}")
    rng = _rng(key, "mc")
    others = sorted(e for e in emotions if e != label)
    options = [label, *rng.sample(others, k=min(n_options - 1, len(others)))]
    rng.shuffle(options)
    return tuple(options)


def yes_no_subject(truth: Sequence[str], candidates: Sequence[str], key: str, purpose: str) -> str | None:
    """A true subject (from `truth`) or a false one (from `candidates` minus `truth`), about 50/50.

    When one side is empty the other is used, so faces without any active AU only get "no" probes.
    """
    rng = _rng(key, purpose)
    wanted_yes = rng.random() < 0.5
    true_side = sorted(set(truth))
    false_side = sorted(set(candidates) - set(truth))
    side = true_side if (wanted_yes and true_side) or not false_side else false_side
    return rng.choice(side) if side else None


def pick(label: str | None, present: Sequence[str], au_codes: Sequence[str], emotions: Sequence[str],
         key: str, graded: Sequence[str] | None = None) -> Probes:
    """All question subjects of one face for one task key. An intensity question asks about one of the
    present AUs whose levels can be stated (`graded`; default: all present AUs)."""
    probe_au = yes_no_subject(present, au_codes, key, "au")
    if probe_au is None:
        raise ValueError("cannot pick an AU to ask about: the AU vocabulary is empty")
    probe_emotion = yes_no_subject([label], emotions, key, "emotion") if label else None
    rng = _rng(key, "focus")
    # Half of the intensity questions ask about one AU, half ask for all of them.
    gradable = sorted(present if graded is None else set(present) & set(graded))
    focus = rng.choice(gradable) if gradable and rng.random() < 0.5 else None
    return Probes(mc_options(label, emotions, key), probe_au, probe_emotion, focus)
