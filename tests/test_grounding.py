"""The grounding verifier: claims extraction (negation, AU codes and names, synonyms, hedges),
verify() rules, its precision/recall on the hand-written fixture set, and every template output
judged grounded."""

from __future__ import annotations

import pytest

from pipeline.grounding import Claims, extract_claims, verify


def claims(text: str) -> Claims:
    return extract_claims(text)


@pytest.mark.parametrize(
    ("text", "affirmed", "denied"),
    [
        ("No, AU4 (brow lowerer) is not active on this face.", set(), {"AU4"}),
        ("AU12 and not AU4.", {"AU12"}, {"AU4"}),
        ("AUs 6 and 12 are present, AU 1, 2 and 5 are not.", {"AU6", "AU12"}, {"AU1", "AU2", "AU5"}),
        ("AU6+AU12 with action unit 25 and AU-26.", {"AU6", "AU12", "AU25", "AU26"}, set()),
        ("Not only AU6 but also AU12 are active.", {"AU6", "AU12"}, set()),
        ("Neither AU1 nor AU2 is active.", set(), {"AU1", "AU2"}),
        ("A happy face typically shows AU6 and AU12; here I see AU12 but AU6 is absent.", {"AU12"}, {"AU6"}),
        ("The cheek raiser is missing, while the lip corner puller is strong.", {"AU12"}, {"AU6"}),
        ("Her brows are not lowered and there is no nose wrinkling.", set(), {"AU4", "AU9"}),
        ("AU12 reaches 4.1 of 5 (marked).", {"AU12"}, set()),
        ("AU 12, AU123 and AU7C.", {"AU12", "AU7"}, set()),
        ("The face shows a smile without AU6.", {"AU12"}, {"AU6"}),
    ],
)
def test_au_claims(text: str, affirmed: set[str], denied: set[str]) -> None:
    c = claims(text)
    assert (set(c.affirmed_aus), set(c.denied_aus)) == (affirmed, denied)


@pytest.mark.parametrize(
    ("text", "affirmed", "denied"),
    [
        ("No doubt she is happy.", {"happiness"}, set()),
        ("She doesn't look angry or afraid, just tired.", set(), {"anger", "fear"}),
        ("Anger is not the answer; it's contempt.", {"contempt"}, {"anger"}),
        ("There is no sign of fear or surprise; she is joyful.", {"happiness"}, {"fear", "surprise"}),
        ("This is surprise rather than fear.", {"surprise"}, {"fear"}),
        ("The person looks astonished, not scared.", {"surprise"}, {"fear"}),
        ("Is she furious? No, she is calm.", {"neutral"}, set()),
        ("(B) happiness", {"happiness"}, set()),
        ("Nothing in the face suggests disgust.", set(), {"disgust"}),
    ],
)
def test_emotion_claims(text: str, affirmed: set[str], denied: set[str]) -> None:
    c = claims(text)
    assert (set(c.affirmed_emotions), set(c.denied_emotions)) == (affirmed, denied)


def test_hedges_and_generic_statements_are_not_affirmations() -> None:
    c = claims("It could be mistaken for fear, but the raised cheeks and smile show happiness.")
    assert c.hedged_emotions == {"fear"} and c.affirmed_emotions == {"happiness"}
    assert c.affirmed_aus == {"AU6", "AU12"}
    c = claims("None of the observed action units is a typical marker of sadness.")
    assert c == Claims()


def test_verify_rules() -> None:
    ok = verify("Happiness: AU6 and AU12 are active, AU4 is absent.", "happiness", ["AU6", "AU12"], "fe_recognition")
    assert ok.grounded and ok.reasons == ()
    v = verify("She is angry, with AU4 (brow lowerer) active.", "sadness", ["AU1"], "description")
    assert set(v.reasons) == {"affirms absent AU4 (brow lowerer)", "affirms anger but the label is sadness"}
    assert verify("AU12 is not present.", None, ["AU12"]).reasons == ("denies present AU12 (lip corner puller)",)
    assert verify("She is not sad.", "sadness", []).reasons == ("denies the label sadness",)
    assert verify("AU12 is active.", "fear", ["AU12"], "fe_recognition").reasons == (
        "does not state the label fear",)
    assert verify("She might be afraid.", "happiness", []).reasons == (
        "hedges fear without affirming the label happiness",)
    assert verify("She looks angry.", None, []).grounded  # no label: emotions are not checked
    assert not verify("She looks angry.", None, [], "fe_recognition").grounded
    assert verify("Her brows are raised.", None, ["AU2"]).grounded  # "raised brows": AU1 or AU2
    assert not verify("Her brows are raised.", None, ["AU4"]).grounded
