"""The AU vocabulary (schemas/au_vocabulary.csv): FACS code, number, name, face region, muscle.

Its row order is the order of every AU vector in a build (`au_intensity`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def load_au_vocabulary(path: str | Path) -> list[dict[str, Any]]:
    """schemas/au_vocabulary.csv -> [{code, number, name, region, muscle}] in file (= vector) order."""
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
