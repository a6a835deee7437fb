"""The AU vocabulary file (`au.vocabulary`, a CSV): FACS code, number, name, face region, muscle.

Its row order is the order of every AU vector in a build (`au_intensity`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def load_au_vocabulary(path: str | Path) -> list[dict[str, Any]]:
    """The vocabulary CSV -> [{code, number, name, region, muscle}] in file (= vector) order. A build reads it
    once, into its knowledge (`pipeline.knowledge`)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {
            "code": r["code"],
            "number": int(r["number"]),
            "name": r["name"],
            "region": r["region"],
            "muscle": r["muscle"],
        }
        for r in rows
    ]
