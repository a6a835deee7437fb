"""Release checks: answers agree with labels, subject-disjoint splits, duplicates, no vanishing class."""

from __future__ import annotations

import pandas as pd

from pipeline.grounding import disagreements, extract_claims
from pipeline.io.manifest import Counts
from pipeline.validate import dataset_checks as dc


def frame(**overrides) -> pd.DataFrame:
    base = {
        "sample_id": ["s1", "s2", "s3"], "face_id": ["f1", "f2", "f3"], "face_index": [0, 0, 0],
        "image_sha256": ["a", "b", "c"], "source": ["x", "x", "x"], "subject_id": ["p1", "p1", "p2"],
        "split": ["train", "train", "test"], "emotion": ["happiness", "happiness", "sadness"],
        "au_present": [["AU6", "AU12"], ["AU12"], ["AU1", "AU15"]], "task": ["fe_recognition"] * 3,
        "conversations": [
            [{"role": "user", "content": "<image>\nEmotion?"}, {"role": "assistant", "content": "Happiness."}],
            [{"role": "user", "content": "<image>\nEmotion?"}, {"role": "assistant", "content": "A happy face."}],
            [{"role": "user", "content": "<image>\nEmotion?"}, {"role": "assistant", "content": "Sadness, AU15."}],
        ],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_grounded_frame_passes_every_check() -> None:
    f = frame()
    counts = Counts(inputs=3, accepted_inputs=3, labelled_inputs_by_emotion={"happiness": 2, "sadness": 1})
    for name, ok, detail in [dc.answers_agree_with_labels(f), dc.subjects_disjoint(f), dc.faces_disjoint(f),
                             dc.duplicate_rate(f, 0.0), dc.no_class_vanishes(f, counts, 0.5)]:
        assert ok, (name, detail)


def test_hallucinated_au_and_wrong_emotion_fail() -> None:
    convs = frame()["conversations"].tolist()
    convs[0] = [convs[0][0], {"role": "assistant", "content": "Happiness with AU4 (brow lowerer)."}]
    convs[2] = [convs[2][0], {"role": "assistant", "content": "The person looks angry."}]
    name, ok, detail = dc.answers_agree_with_labels(frame(conversations=convs))
    assert not ok and detail.startswith("2 of 3")


def test_subject_or_face_in_two_splits_fails() -> None:
    check = dc.subjects_disjoint(frame(split=["train", "test", "test"]))
    assert check.name == "subject_disjoint_splits" and not check.success
    assert check.detail == "1 of 2 subjects in more than one split, e.g. ['p1']"
    check = dc.faces_disjoint(frame(face_id=["f1", "f1", "f3"], split=["train", "test", "test"]))
    assert check == ("no_face_leakage", False, "1 of 2 faces in more than one split, e.g. ['f1']")


def test_duplicate_images_fail_above_the_threshold() -> None:
    f = frame(image_sha256=["a", "a", "c"])
    assert not dc.duplicate_rate(f, 0.1)[1]
    assert dc.duplicate_rate(f, 0.5)[1]


def test_vanished_class_fails() -> None:
    counts = Counts(inputs=40, accepted_inputs=3,
                    labelled_inputs_by_emotion={"happiness": 2, "sadness": 1, "fear": 37})
    name, ok, detail = dc.no_class_vanishes(frame(), counts, 0.5)
    assert not ok and "fear: 0 of 37" in detail


def test_mentions() -> None:
    claims = extract_claims("AU 12 and au6, not AU123")
    assert claims.affirmed_aus == {"AU12", "AU6"} and not claims.denied_aus
    claims = extract_claims("unhappy but not happy")
    assert (claims.affirmed_emotions, claims.denied_emotions) == ({"sadness"}, {"happiness"})
    assert disagreements("Neutral.", "neutral", [], "fe_recognition") == []
    assert disagreements("Neutral.", "fear", [], "fe_recognition")


def test_a_spread_sample_reverifies_part_of_the_rows() -> None:
    convs = frame()["conversations"].tolist()
    convs[1] = [convs[1][0], {"role": "assistant", "content": "The person looks angry."}]
    f = frame(conversations=convs)
    assert not dc.answers_agree_with_labels(f)[1]  # every row: the bad middle row is found
    name, ok, detail = dc.answers_agree_with_labels(f, rows=2)  # first and last rows only
    assert ok and detail == "0 of 2 answers (spread sample of 3) disagree with their labels"
    assert dc.answers_agree_with_labels(f, rows=3)[1] is False  # a sample as large as the frame: every row
