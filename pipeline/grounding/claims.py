"""Tokens -> claims: sentences split into clauses, negation scope, hedges and generic statements
(the policy is in the package docstring, pipeline/grounding/__init__.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pipeline.grounding.lexicon import Mention, compiled_lexicon, lexicon_of
from pipeline.grounding.tokens import Token, tokenise
from pipeline.knowledge import Knowledge

_HARD = {".", "!", "?", ";", ":", "\n"}
_SOFT = {",", "—", "–", "-"}


@dataclass(frozen=True)
class Claims:
    """What a text asserts about the face.

    Emotions are canonical names (happiness, ...); AUs are codes ("AU12"), or "AU1|AU2" for a
    phrasing that means at least one of several AUs. Hedged mentions are neither affirmed nor denied.
    """

    affirmed_emotions: frozenset[str] = frozenset()
    denied_emotions: frozenset[str] = frozenset()
    affirmed_aus: frozenset[str] = frozenset()
    denied_aus: frozenset[str] = frozenset()
    hedged_emotions: frozenset[str] = frozenset()
    hedged_aus: frozenset[str] = frozenset()


def sentences(tokens: list[Token]) -> list[tuple[list[Token], bool]]:
    """(tokens, is_question) per sentence."""
    out: list[tuple[list[Token], bool]] = []
    current: list[Token] = []
    for tok in tokens:
        if tok.text in _HARD:
            if current:
                out.append((current, tok.text == "?"))
            current = []
        else:
            current.append(tok)
    if current:
        out.append((current, False))
    return out


def is_mention(tok: Token) -> bool:
    return tok.mention is not None


def _has_verb(tokens: Sequence[Token]) -> bool:
    return any("verb" in t.cats for t in tokens)


def _list_continues(tokens: list[Token], i: int) -> bool:
    """Whether the comma at i only separates items of a list of mentions ("AU1, AU2 and AU5")."""
    j = i + 1
    if j < len(tokens) and tokens[j].text in {"and", "or", "nor"}:
        j += 1
    if j >= len(tokens) or not is_mention(tokens[j]):
        return False
    while j < len(tokens) and is_mention(tokens[j]):
        j += 1
    return j >= len(tokens) or "connector" in tokens[j].cats


def clauses(sentence: list[Token]) -> list[list[Token]]:
    clauses: list[list[Token]] = []
    current: list[Token] = []
    for i, tok in enumerate(sentence):
        split = False
        if tok.text in _SOFT:
            split = not (tok.text == "," and _list_continues(sentence, i))
        elif "clause_break" in tok.cats:
            split = True
        elif tok.text in {"and", "or"}:
            # "AU12 is present and AU6 is absent": two clauses; "AU6 and AU12 are absent": one.
            rest = []
            for t in sentence[i + 1 :]:
                if t.text in _SOFT or "clause_break" in t.cats:
                    break
                rest.append(t)
            split = _has_verb(current) and _has_verb(rest)
        if split:
            if current:
                clauses.append(current)
            # A break word opens the next clause (an ellipsis cue there matters); punctuation goes.
            current = [tok] if "clause_break" in tok.cats else []
        else:
            current.append(tok)
    if current:
        clauses.append(current)
    return clauses


def np_scope(clause: list[Token], j: int) -> list[int]:
    """Indices of the mentions in the noun phrase after the cue at j ("without AU6 or AU7")."""
    hits: list[int] = []
    k, gap = j + 1, 0
    while k < len(clause):
        tok = clause[k]
        if is_mention(tok):
            hits.append(k)
            k += 1
            # Continue only through a connector to the next mention: "AU6, AU7 or AU9".
            m = k
            while m < len(clause) and "connector" in clause[m].cats:
                m += 1
            if m == k:
                break
            filler = 0
            while m < len(clause) and not is_mention(clause[m]) and filler < 2 and "verb" not in clause[m].cats:
                m += 1
                filler += 1
            if m < len(clause) and is_mention(clause[m]):
                k = m
                continue
            break
        if "verb" in tok.cats or gap >= 3 or tok.cats & {"negation_clause", "negation_np", "absence"}:
            break
        gap += 1
        k += 1
    return hits


def denied_mentions(clause: list[Token], sentence_start: bool) -> set[int]:
    """Indices of the mentions that a negation in the clause denies."""
    mentions = [i for i, t in enumerate(clause) if t.mention is not None]
    if not mentions:
        return set()  # nothing to deny
    denied = {i for i in mentions if clause[i].mention.negated}
    for j, tok in enumerate(clause):
        if not tok.cats:
            continue
        if "negation_np" in tok.cats:
            denied.update(np_scope(clause, j))
        elif "absence" in tok.cats:
            scope = np_scope(clause, j)
            denied.update(scope or [i for i in mentions if i < j])
        elif "negation_clause" in tok.cats:
            before = [i for i in mentions if i < j]
            after = [i for i in mentions if i > j]
            if tok.text == "no" and j == 0 and sentence_start and (len(clause) == 1 or not after):
                continue  # the interjection "No," answering a question
            denied.update(after)
            k = j + 1
            while k < len(clause) and "filler_after_negation" in clause[k].cats:
                k += 1
            if k >= len(clause) or "presence" in clause[k].cats:
                denied.update(before)  # "AU4 is not present", "AU6 is not"
            elif j > 0 and "copula" in clause[j - 1].cats:
                # "Anger is not the answer": an emotion as subject of a negated copula.
                denied.update(i for i in before if clause[i].mention.kind == "emotion")
    return denied


def framed(clause: list[Token], i: int) -> bool:
    """Whether the mention at i is named as a category ("do not form the pattern of fear")."""
    return any("frame" in t.cats for t in clause[max(0, i - 3) : i])


def extract_claims(text: str, knowledge: Knowledge | None = None) -> Claims:
    """The emotions and AUs that `text` affirms, denies or hedges (see the package docstring), read with the
    lexicon of `knowledge` (the packaged knowledge by default)."""
    if not isinstance(text, str):
        raise TypeError(f"extract_claims needs a str, got {type(text).__name__}")
    lex = lexicon_of(knowledge)
    # Texts repeat across rows (templates, multi-turn answers); a str subclass skips the cache (its
    # hash or equality might not be the value's).
    return cached_claims(text, lex.key) if type(text) is str else claims_from_tokens(tokenise(text, lex))


@lru_cache(maxsize=4096)
def cached_claims(text: str, lexicon_key: str) -> Claims:
    return claims_from_tokens(tokenise(text, compiled_lexicon(lexicon_key)))


def claims_from_tokens(tokens: list[Token]) -> Claims:
    sets: dict[str, set[str]] = {
        k: set() for k in ("affirmed_emotions", "denied_emotions", "affirmed_aus", "denied_aus",
                           "hedged_emotions", "hedged_aus")
    }
    for sentence, question in sentences(tokens):
        if question:
            continue
        previous_denied = False
        for n, clause in enumerate(clauses(sentence)):
            if any("generic" in t.cats for t in clause):
                continue
            hedged = any("hedge" in t.cats for t in clause)
            denied = denied_mentions(clause, sentence_start=n == 0)
            if previous_denied and "ellipsis" in clause[0].cats:
                # "AU12 is missing, and so is AU6": the ellipsis repeats the negation.
                denied |= {i for i, t in enumerate(clause) if is_mention(t)}
            if any(is_mention(t) for t in clause):
                previous_denied = bool(denied)
            for i, tok in enumerate(clause):
                if tok.mention is None or (i in denied and framed(clause, i)):
                    continue
                polarity = "denied" if i in denied else "hedged" if hedged else "affirmed"
                m = tok.mention
                kind = "emotions" if m.kind == "emotion" else "aus"
                values = [m.values[0]] if m.kind == "emotion" else au_keys(m)
                sets[f"{polarity}_{kind}"].update(values)
    return Claims(**{k: frozenset(v) for k, v in sets.items()})


def au_keys(m: Mention) -> list[str]:
    """The claim keys of an AU mention: its codes, or "AU1|AU2" for at least one of several."""
    if m.mode == "any" and len(m.values) > 1:
        return ["|".join(sorted(m.values, key=lambda c: int(c[2:])))]
    return list(m.values)
