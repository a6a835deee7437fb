"""Where the packaged data (vocabularies, tables, schemas, model registry) is: named here only."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "schemas"


def data_file(name: str) -> Path:
    """A file of the packaged data folder, e.g. `data_file("au_vocabulary.csv")`."""
    return DATA_DIR / name
