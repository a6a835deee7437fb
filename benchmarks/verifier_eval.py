"""Evaluate the grounding verifier on the hand-written fixture set (tests/fixtures/grounding_texts.jsonl).

Positive class = ungrounded (what the verifier must catch). Prints precision, recall and F1 per
category and overall, the confusion table, the misjudged texts, and verify() speed.

    PYTHONPATH=. python benchmarks/verifier_eval.py [--fixture PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.grounding import verify
from pipeline.grounding.claims import cached_claims

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "grounding_texts.jsonl"


def load_fixture(path: Path = FIXTURE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def confusion(rows: list[dict[str, Any]]) -> dict[str, int]:
    """tp/fp/fn/tn with 'ungrounded' as the positive class."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for row in rows:
        flagged = not verify(row["text"], row["emotion"], row["au_present"], row["task"]).grounded
        expected = not row["grounded"]
        counts[("t" if flagged == expected else "f") + ("p" if flagged else "n")] += 1
    return counts


def scores(c: dict[str, int]) -> tuple[float, float, float]:
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the fixture for the speed figure")
    args = parser.parse_args()
    rows = load_fixture(args.fixture)
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    print(f"{'category':<18}{'n':>4}{'ungr.':>6}{'tp':>4}{'fp':>4}{'fn':>4}{'tn':>4}{'prec':>7}{'recall':>7}{'F1':>7}")
    for name in [*sorted(by_category), "OVERALL"]:
        subset = rows if name == "OVERALL" else by_category[name]
        c = confusion(subset)
        p, r, f = scores(c)
        n_bad = sum(not x["grounded"] for x in subset)
        print(f"{name:<18}{len(subset):>4}{n_bad:>6}{c['tp']:>4}{c['fp']:>4}{c['fn']:>4}{c['tn']:>4}{p:>7.3f}{r:>7.3f}{f:>7.3f}")
    c = confusion(rows)
    print("\nconfusion (rows: expected, columns: verdict)")
    print(f"{'':<12}{'flagged':>9}{'passed':>9}")
    print(f"{'ungrounded':<12}{c['tp']:>9}{c['fn']:>9}")
    print(f"{'grounded':<12}{c['fp']:>9}{c['tn']:>9}")
    print("\nmisjudged:")
    for row in rows:
        v = verify(row["text"], row["emotion"], row["au_present"], row["task"])
        if v.grounded != row["grounded"]:
            print(f"  [{row['category']}] expected grounded={row['grounded']}: {row['text']!r} "
                  f"(emotion={row['emotion']}, present={row['au_present']}) -> {list(v.reasons)}")
    start = time.perf_counter()
    for _ in range(args.repeat):
        cached_claims.cache_clear()  # time reading the texts, not the cache of claims
        for row in rows:
            verify(row["text"], row["emotion"], row["au_present"], row["task"])
    elapsed = time.perf_counter() - start
    n = args.repeat * len(rows)
    print(f"\nspeed: {n / elapsed:,.0f} texts/s ({1e3 * elapsed / n:.3f} ms per text, {n} texts, one core)")


if __name__ == "__main__":
    main()
