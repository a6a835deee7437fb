"""Grounding: what a text claims about a face's emotion and action units (AUs), and whether those
claims agree with the face's labels.

Used on every template output and every LLM-written text. The public API:

    claims = extract_claims("No, AU4 (brow lowerer) is not active; the smile (AU12) shows happiness.")
    claims.denied_aus == {"AU4"}; claims.affirmed_aus == {"AU12"}; claims.affirmed_emotions == {"happiness"}
    verdict = verify(text, emotion="happiness", au_present=["AU6", "AU12"], task="fe_recognition")
    verdict.grounded, verdict.reasons        # False, ("affirms absent AU4 (brow lowerer)",) ...

The modules, in the order a text goes through them: `lexicon` (the knowledge, compiled once),
`prefilter` (cheap tests that skip regexes which cannot match), `tokens` (text -> tokens and
mentions), `claims` (tokens -> claims), `verdict` (claims against the labels).

How a text is read (rule-based, no model; knowledge from `pipeline.knowledge`: the grounding lexicon,
the emotions' "mentions", the AU names of the build's vocabulary; `verify(..., knowledge=...)`):

* Mentions: emotion words and synonyms; AU codes ("AU12", "AU 12", "AU-12", "action unit 12",
  "AUs 6 and 12", "AU6+AU12", "AU 1, 2 and 5"); FACS names ("lip corner puller") and common
  phrasings ("raised cheeks", "brows are lowered", "smile"). A phrasing that fits several AUs
  ("raised brows": AU1 or AU2) is recorded as "AU1|AU2", meaning at least one of them.
* Sentences split at . ! ? ; : and line breaks; a sentence is split into clauses at commas (not
  inside a list of mentions), at words like "but", "while", "with", and at "and"/"or" joining two
  clauses that each have a verb.
* Negation: "not"/"never"/"no"/"none"/"neither ... nor"/"rules out" deny the mentions after them
  in the clause; "not" followed by a presence word ("AU4 is not present", "does not appear"), and
  "not" right after a copula for emotions ("Anger is not the answer"), deny the clause's subject
  too; "without", "no sign of", "lacks", "rather than", "instead of" deny only the noun phrase
  that follows; "absent", "missing", "ruled out" deny what follows them or, if nothing does, the
  clause's subject. A negation inside an AU phrasing ("brows are not lowered") denies it.
  Pseudo-negations ("no doubt", "not only", "nothing but", "not surprisingly") negate nothing.

Policy for mentions that are not assertions (chosen to keep the dataset safe):

* In a question (sentence ending in "?"): ignored; a question asserts nothing.
* In a generic or conditional statement ("typically", "usually", "is associated with", "a marker
  of", "prototypical of", "if", "unless"): ignored; knowledge about emotions in general ("a happy face typically shows
  AU6 and AU12") is not a claim about this face, even when negated ("none of these is a typical
  marker of sadness").
* Hedged ("might", "could be mistaken for", "possibly", "whether", "little evidence for"):
  recorded as hedged, neither affirmed nor denied. `verify` treats a hedge as a weak claim: a
  hedged AU that is not present is ungrounded; a hedged emotion other than the label is ungrounded
  unless the text also affirms the label (an honest "could be mistaken for fear, but it is
  happiness" is fine, a bare "she might be afraid" is not); a hedged label does not count as
  stating it. Negation wins over a hedge ("might not be angry" denies anger).
"""

from pipeline.grounding.claims import Claims, extract_claims
from pipeline.grounding.lexicon import tasks_stating_emotion
from pipeline.grounding.verdict import Verdict, disagreements, verify

__all__ = ["Claims", "Verdict", "extract_claims", "verify", "disagreements", "tasks_stating_emotion"]
