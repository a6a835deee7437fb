"""The faces of one or more builds as a feature table: what AU heads are derived and learned from.

One row per face (a build has one row per face and task): the face feature vector (blendshapes,
then mesh measures, named as the head expects them), the corpus AU coding where the corpus has one
(`au_label_intensity`: 0-5 per vocabulary AU, NaN where the corpus does not code that AU), and the
subject, used to keep a subject's faces in one cross-validation fold.

Neutral negatives: a face the corpus labels `neutral` and codes no AU for (CK+'s first frames, which the
CK+ protocol records at neutral; any corpus's neutral-labelled faces) shows no muscle activity, so with
`neutral_negatives` it is coded absent for every AU. That is what teaches a head to stay quiet on
resting faces; `neutral` marks those faces so their false-AU rate can be reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.au.appearance import LENGTH, descriptor
from pipeline.au.head import feature_names
from pipeline.io.build_dir import BuildDir

COLUMNS = ["face_id", "source", "source_item", "subject_id", "emotion", "blendshapes", "face_measures",
           "au_intensity", "au_label_intensity"]
OPTIONAL = ["au_label_graded"]  # builds before record schema 1.5 lack it: no graded levels


@dataclass
class FaceTable:
    builds: list[str]
    codes: list[str]
    feature_names: list[str]
    features: np.ndarray  # (n_faces, n_features)
    labels: np.ndarray  # (n_faces, n_aus): corpus intensity 0-5, NaN = not coded
    au_intensity: np.ndarray  # (n_faces, n_aus): what the build released
    groups: list[str]  # subject (or, without one, the item: a face is its own group)
    emotions: list[str | None]
    sources: list[str]
    neutral: np.ndarray | None = None  # (n_faces,) bool: an uncoded neutral face taken as negative for every AU
    graded: np.ndarray | None = None  # (n_faces, n_aus) bool: the corpus graded this AU's FACS level (A-E)
    descriptors: np.ndarray | None = None  # (n_faces, appearance.LENGTH): the aligned crops' appearance, if read
    items: list[str] | None = None  # the source item (file) of each face

    def __post_init__(self) -> None:
        if self.neutral is None:
            self.neutral = np.zeros(len(self.features), dtype=bool)
        if self.graded is None:
            self.graded = np.zeros(self.labels.shape, dtype=bool)


def read_faces(builds: list[str | Path | BuildDir], neutral_negatives: bool = False,
               appearance: bool = False) -> FaceTable:
    """The faces of `builds`; with `appearance`, each aligned crop's appearance descriptor too (read from the
    crop the row stores, as a build's AU stage reads it)."""
    codes: list[str] | None = None
    names: list[str] | None = None
    rows: list[dict] = []
    seen: set[str] = set()
    for location in builds:
        build = BuildDir(location)
        if not build.has_manifest():
            raise ValueError(f"{build}: not a build (no manifest.json)")
        manifest = build.manifest
        build_codes = list(manifest.au_vocabulary)
        build_names = feature_names(manifest.blendshape_names, manifest.face_measure_names)
        if not manifest.face_measure_names:
            raise ValueError(f"{build}: made before face measures were recorded; rebuild it")
        if codes is None:
            codes, names = build_codes, build_names
        elif (codes, names) != (build_codes, build_names):
            raise ValueError(f"{build}: AU vocabulary or face features differ from those of {builds[0]}")
        shards = build.shards()
        present = build.parquet(shards[0]).schema_arrow.names if shards else COLUMNS
        if appearance and shards and "image" not in present:
            raise ValueError(f"{build}: its rows hold no aligned crops (column image), which appearance features "
                             "are read from (fea calibrate --appearance 0 learns without them)")
        table = build.read_table(shards, COLUMNS + [c for c in OPTIONAL if c in present]
                                 + (["image"] if appearance else []))
        for row in table.to_pylist() if table is not None else []:
            if row["face_id"] not in seen:  # rows are per (face, task): one per face
                seen.add(row["face_id"])
                if appearance:
                    row["descriptor"] = descriptor(row.pop("image")["bytes"])
                rows.append(row)
    if codes is None or names is None:
        raise ValueError("no builds given")
    n = len(rows)
    features = np.array([r["blendshapes"] + r["face_measures"] for r in rows], dtype=np.float64).reshape(
        n, len(names))
    labels = np.array([[np.nan if v is None else v for v in (r["au_label_intensity"] or [None] * len(codes))]
                       for r in rows], dtype=np.float64).reshape(n, len(codes))
    graded = np.array([[c in (r.get("au_label_graded") or ()) for c in codes] for r in rows], dtype=bool).reshape(
        n, len(codes))
    uncoded = ~np.isfinite(labels).any(axis=1)
    neutral = np.array([r["emotion"] == "neutral" for r in rows], dtype=bool) & uncoded & neutral_negatives
    labels[neutral] = 0.0
    return FaceTable(
        builds=[str(b) for b in builds], codes=codes, feature_names=names, features=features, labels=labels,
        au_intensity=np.array([r["au_intensity"] for r in rows], dtype=np.float64).reshape(n, len(codes)),
        groups=[r["subject_id"] or f"{r['source']}:{r['source_item']}" for r in rows],
        emotions=[r["emotion"] for r in rows], sources=[r["source"] for r in rows], neutral=neutral, graded=graded,
        descriptors=np.array([r["descriptor"] for r in rows], dtype=np.float32).reshape(n, LENGTH) if appearance
        else None,
        items=[r["source_item"] for r in rows],
    )


def read_views(first: str | Path | BuildDir, second: str | Path | BuildDir, appearance: bool = False
               ) -> tuple[FaceTable, FaceTable]:
    """Two builds of the same photos seen two ways (e.g. as taken, and each face cropped and reduced to 48 px grey):
    their faces paired by file name without extension, in the same order; faces only one build accepted, or
    files with several faces, are left out. No labels are read: the pairs only show what the change of view
    does to the features."""
    tables = [read_faces([location], appearance=appearance) for location in (first, second)]
    keys = []
    for table in tables:
        stems = [Path(item).stem for item in table.items]
        counts = Counter(stems)
        keys.append({stem: i for i, stem in enumerate(stems) if counts[stem] == 1})
    common = sorted(set(keys[0]) & set(keys[1]))
    if not common:
        raise ValueError(f"{first} and {second}: no face of one build pairs with a face of the other (same file "
                         "name, one face each)")
    return tuple(subset(table, [key[stem] for stem in common]) for table, key in zip(tables, keys, strict=True))


def subset(table: FaceTable, index: list[int]) -> FaceTable:
    """The faces of `table` at `index`, in that order (repeats allowed), with every per-face field."""
    def pick(values):
        return None if values is None else [values[i] for i in index] if isinstance(values, list) else values[index]

    return FaceTable(**{name: pick(value) if name not in ("builds", "codes", "feature_names") else value
                        for name, value in vars(table).items()})
