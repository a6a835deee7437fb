"""AffectNet, manually annotated part, in either of its two official release layouts.

Codes (Mollahosseini, Hasani & Mahoor, "AffectNet: A Database for Facial Expression, Valence, and
Arousal Computing in the Wild", IEEE TAC 2017, and the release README): 0 neutral, 1 happy, 2 sad,
3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt; 8 none, 9 uncertain, 10 non-face (rejected as
`no_emotion_label`). Valence/arousal lie in [-1, 1] (-2 = not annotated, left out).

1. The 8-class release (train_set/ + val_set/ folders):
       train_set/images/<n>.jpg
       train_set/annotations/<n>_exp.npy  <n>_val.npy  <n>_aro.npy  (<n>_lnd.npy: landmarks, not read)
       val_set/...  (split "validation")
2. The original release (CSV file lists):
       Manually_Annotated_file_lists/training.csv, validation.csv   (or at the root)
         columns subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks,
         expression, valence, arousal
       Manually_Annotated_Images/<subDirectory_filePath>
   The face box goes into meta; landmarks are not read.

Options: layout ("auto" | "folders" | "csv"), image_dir (csv layout; default Manually_Annotated_Images),
manifests (csv layout; {file name: split}, default training.csv -> train, validation.csv -> validation).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.base import Source, SourceError, corpus_root
from pipeline.sources.labels import corpus_label_map

FOLDERS = {"train_set": "train", "val_set": "validation"}
MANIFESTS = {"training.csv": "train", "validation.csv": "validation"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _code(value: Any) -> str:
    """'1', 1, 1.0, array('1') -> '1'."""
    value = value.item() if isinstance(value, np.ndarray) else value
    text = str(value).strip()
    try:
        return str(int(float(text)))
    except ValueError:
        return text


def _load(path: Path) -> Any:
    try:
        with path.open("rb") as fh:  # a local file or an object
            return np.load(fh)
    except (OSError, ValueError):
        return None


def _affect(valence: Any, arousal: Any) -> dict[str, float]:
    meta = {}
    for key, value in (("valence", valence), ("arousal", arousal)):
        try:
            number = float(np.asarray(value).item()) if value is not None and str(value).strip() else None
        except (TypeError, ValueError):
            number = None
        if number is not None and -1.0 <= number <= 1.0:
            meta[key] = number
    return meta


class AffectNetSource(Source):
    kind = "affectnet"
    summary = "AffectNet: train_set/val_set images + *_exp/_val/_aro.npy, or training/validation.csv file lists"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        layout = self.options.get("layout", "auto")
        if layout == "folders" or (layout == "auto" and any((root / f).is_dir() for f in FOLDERS)):
            yield from self._folders(root)
        elif layout in ("csv", "auto"):
            yield from self._csv(root)
        else:
            raise SourceError(f"source {self.name}: layout must be auto, folders or csv, not {layout!r}")

    def _item(self, rel: str, path: Path, code: str, split: str, meta: dict) -> SourceItem | Reject:
        labels = corpus_label_map("affectnet")
        if code not in labels:
            return self.reject(rel, "unknown_label", f"AffectNet expression {code!r}")
        if labels[code] is None:
            return self.reject(rel, "no_emotion_label", f"AffectNet expression {code} (none/uncertain/non-face)")
        return SourceItem(self.name, rel, str(path), emotion=labels[code], emotion_raw=code, split=split, meta=meta)

    def _folders(self, root: Path) -> Iterator[SourceItem | Reject]:
        found = [f for f in FOLDERS if (root / f / "images").is_dir()]
        if not found:
            raise SourceError(f"source {self.name}: no train_set/images or val_set/images under {root}")
        for folder in found:
            images = [p for p in (root / folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            for path in sorted(images, key=lambda p: (len(p.stem), p.stem)):  # 2.jpg before 10.jpg
                rel = path.relative_to(root).as_posix()
                notes = root / folder / "annotations"
                expression = _load(notes / f"{path.stem}_exp.npy")
                if expression is None:
                    yield self.reject(rel, "missing_annotation", f"{folder}/annotations/{path.stem}_exp.npy unreadable")
                    continue
                meta = _affect(*[_load(notes / f"{path.stem}_{k}.npy") for k in ("val", "aro")])
                yield self._item(rel, path, _code(expression), FOLDERS[folder], meta)

    def _csv(self, root: Path) -> Iterator[SourceItem | Reject]:
        lists = root / "Manually_Annotated_file_lists"
        base = lists if lists.is_dir() else root
        manifests = {base / name: split for name, split in self.options.get("manifests", MANIFESTS).items()}
        if not any(m.is_file() for m in manifests):
            raise SourceError(f"source {self.name}: neither train_set/, val_set/ nor "
                              f"{', '.join(MANIFESTS)} found under {root}")
        image_dir = self.options.get("image_dir")
        image_root = root / image_dir if image_dir else (
            root / "Manually_Annotated_Images" if (root / "Manually_Annotated_Images").is_dir() else root)
        for manifest, split in manifests.items():
            if not manifest.is_file():
                continue
            with manifest.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                missing = {"subDirectory_filePath", "expression"} - set(reader.fieldnames or [])
                if missing:
                    raise SourceError(f"source {self.name}: {manifest.name} lacks column(s) {', '.join(missing)}")
                for line, row in enumerate(reader, start=2):
                    rel_name = (row["subDirectory_filePath"] or "").strip()
                    path = image_root / rel_name
                    if not rel_name:
                        yield self.reject(f"{manifest.name}:{line}", "missing_path", "empty subDirectory_filePath")
                    elif not self.inside_root(root, path):
                        yield self.reject(rel_name, "path_outside_root", f"{rel_name} resolves outside {root}")
                    elif not path.is_file():
                        yield self.reject(path.relative_to(root).as_posix(), "file_not_found", str(path))
                    else:
                        meta = _affect(row.get("valence"), row.get("arousal"))
                        box = [row.get(k) for k in ("face_x", "face_y", "face_width", "face_height")]
                        if all(v and v.strip().lstrip("-").isdigit() for v in box):
                            meta["face_box_xywh"] = [int(v) for v in box]
                        rel = path.relative_to(root).as_posix()
                        yield self._item(rel, path, _code(row["expression"]), split, meta)
