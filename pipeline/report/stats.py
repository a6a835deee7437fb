"""What a build contains, read back from its files: the numbers behind `fea inspect` and the report.

Only the small columns are read for the statistics; conversations and image bytes are read for the
few sampled rows only. AU and consistency statistics are per face (`face_id`), not per row: one face
yields several rows (one per task), which would otherwise count it several times.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.io.build_dir import BuildDir
from pipeline.io.manifest import Manifest

UNLABELLED = "(unlabelled)"
STAT_COLUMNS = ["face_id", "source", "source_item", "frame_index", "split", "emotion", "au_present",
                "fe_au_consistency", "fe_au_conflict", "task"]
SAMPLE_COLUMNS = ["sample_id", "template_id", "conversations"]


@dataclass
class Face:
    emotion: str  # UNLABELLED when the corpus gave no label
    au_present: list[str]
    consistency: float | None
    conflict: bool
    source: str = ""


@dataclass
class SampleRow:
    """One row picked for display; `image` holds the JPEG bytes only when asked for."""

    sample_id: str
    face_id: str
    source: str
    source_item: str
    frame_index: int | None
    split: str
    emotion: str
    au_present: list[str]
    consistency: float | None
    conflict: bool
    task: str
    template_id: str
    conversations: list[dict[str, str]]
    image: bytes | None = None

    @property
    def item(self) -> str:
        """source/source_item, with #frame for a video frame."""
        frame = "" if self.frame_index is None else f"#{self.frame_index}"
        return f"{self.source}/{self.source_item}{frame}"


@dataclass
class RejectReason:
    stage: str
    reason: str
    inputs: int  # inputs rejected for this reason (manifest accounting)
    records: int  # reject records in the files (an input may give several, e.g. extra faces)
    example: str  # one source_item and its detail


@dataclass
class BuildStats:
    build: BuildDir
    manifest: Manifest
    au_vocabulary: list[str]
    rows: int
    rows_by_split: dict[str, int]
    rows_by_task: dict[str, int]
    rows_by_emotion: dict[str, int]
    tasks_by_split: dict[str, dict[str, int]]
    faces: dict[str, Face]
    rejects: list[RejectReason]
    _files: list[tuple[Path, int]] = field(default_factory=list, repr=False)  # (shard, its rows)
    _stat_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    # --- accounting -------------------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        return self.build.root

    @property
    def counts(self) -> dict[str, Any]:
        """The manifest's counts as a mapping (with the optional per-column counts of newer builds)."""
        return self.manifest.counts.model_dump()

    def accounting_line(self) -> str:
        c = self.counts
        inputs, accepted, rejected = c.get("inputs", 0), c.get("accepted_inputs", 0), c.get("rejected_inputs", 0)
        ok = "" if inputs == accepted + rejected else "  (MISMATCH: the counts do not add up)"
        return (f"inputs {inputs} = {accepted} accepted + {rejected} rejected; "
                f"{self.rows} rows from {len(self.faces)} faces{ok}")

    # --- per-face label statistics ----------------------------------------------------------------
    def faces_by_emotion(self) -> dict[str, int]:
        return _sorted_labels(Counter(f.emotion for f in self.faces.values()))

    def au_codes(self) -> list[str]:
        """The vocabulary, plus any code seen in the data but missing from it (shown last)."""
        seen = {au for f in self.faces.values() for au in f.au_present}
        return list(self.au_vocabulary) + sorted(seen - set(self.au_vocabulary), key=_au_number)

    def au_frequency(self) -> dict[str, float]:
        """Share of faces with each AU present, in vocabulary order."""
        n = len(self.faces)
        counts = Counter(au for f in self.faces.values() for au in set(f.au_present))
        return {au: (counts[au] / n if n else 0.0) for au in self.au_codes()}

    def emotion_au_share(self) -> tuple[list[str], list[str], list[list[float]]]:
        """(emotions, AU codes, share[emotion][au]): share of faces of each emotion with each AU."""
        emotions, codes = list(self.faces_by_emotion()), self.au_codes()
        return emotions, codes, self._au_shares(lambda f: f.emotion, emotions, codes)

    def _au_shares(self, group_of, groups: list[str], codes: list[str]) -> list[list[float]]:
        """share[group][au]: the share of the group's faces with the AU present."""
        matrix = []
        for name in groups:
            members = [f for f in self.faces.values() if group_of(f) == name]
            counts = Counter(au for f in members for au in set(f.au_present))
            matrix.append([counts[au] / len(members) for au in codes])
        return matrix

    def au_cooccurrence(self) -> tuple[list[str], list[list[float]]]:
        """(AU codes seen, P[row AU present -> column AU present]) over faces: which AUs fire together.
        The diagonal is 1; AUs never present are left out."""
        seen = Counter(au for f in self.faces.values() for au in set(f.au_present))
        codes = [au for au in self.au_codes() if seen[au]]
        pairs = Counter((a, b) for f in self.faces.values() for a in set(f.au_present) for b in set(f.au_present))
        return codes, [[pairs[(a, b)] / seen[a] for b in codes] for a in codes]

    def sources(self) -> list[str]:
        return sorted({f.source for f in self.faces.values()})

    def source_au_share(self) -> tuple[list[str], list[str], list[list[float]]]:
        """(sources, AU codes, share[source][au]): per-source AU base rates, to spot a corpus whose
        AUs behave differently (another camera, lab lighting, a detector failure)."""
        sources, codes = self.sources(), self.au_codes()
        return sources, codes, self._au_shares(lambda f: f.source, sources, codes)

    def consistency_by_source(self) -> list[tuple[str, str, int, float, float]]:
        """(source, emotion, labelled faces, mean consistency, conflict rate) for every pair with faces."""
        groups: dict[tuple[str, str], list[Face]] = {}
        for f in self.faces.values():
            if f.consistency is not None:
                groups.setdefault((f.source, f.emotion), []).append(f)
        return [(src, emo, len(g), sum(f.consistency for f in g) / len(g), sum(f.conflict for f in g) / len(g))
                for (src, emo), g in sorted(groups.items())]

    def consistency_by_emotion(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for f in self.faces.values():
            if f.consistency is not None:
                out.setdefault(f.emotion, []).append(f.consistency)
        return dict(sorted(out.items()))

    def scored_faces(self) -> int:
        return sum(1 for f in self.faces.values() if f.consistency is not None)

    def mean_consistency(self) -> float | None:
        values = [f.consistency for f in self.faces.values() if f.consistency is not None]
        return sum(values) / len(values) if values else None

    def conflict_rate(self) -> float | None:
        """Share of scored (labelled) faces flagged as FE-AU conflicts."""
        scored = [f for f in self.faces.values() if f.consistency is not None]
        return sum(f.conflict for f in scored) / len(scored) if scored else None

    # --- samples ----------------------------------------------------------------------------------
    def pick_samples(self, n: int, seed: int = 0, with_images: bool = False) -> list[SampleRow]:
        """`n` rows chosen at random (seeded), one per face first so the samples show distinct faces."""
        order = list(range(self.rows))
        random.Random(seed).shuffle(order)
        chosen: list[int] = []
        seen: set[str] = set()
        for i in order:
            face = self._stat_rows[i]["face_id"]
            if face not in seen:
                seen.add(face)
                chosen.append(i)
        if len(chosen) < n:  # fewer faces than samples asked for: repeat faces with their other rows
            taken = set(chosen)
            chosen += [i for i in order if i not in taken]
        chosen = chosen[:max(n, 0)]
        extra = self._read_rows(sorted(chosen), SAMPLE_COLUMNS + (["image"] if with_images else []))
        return [self._sample(i, extra[i]) for i in chosen]

    def _read_rows(self, indices: list[int], columns: list[str]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        start = 0
        for path, num_rows in self._files:
            local = [i - start for i in indices if start <= i < start + num_rows]
            if local:
                table = BuildDir.parquet(path).read(columns=columns).take(local)
                for i, row in zip(local, table.to_pylist(), strict=True):
                    out[start + i] = row
            start += num_rows
        return out

    def _sample(self, i: int, extra: dict[str, Any]) -> SampleRow:
        r = self._stat_rows[i]
        image = extra.get("image")
        return SampleRow(
            sample_id=extra.get("sample_id") or "", face_id=r["face_id"] or "", source=r["source"] or "",
            source_item=r["source_item"] or "", frame_index=r["frame_index"], split=r["split"] or "",
            emotion=_label(r["emotion"]),
            au_present=list(r["au_present"] or []), consistency=r["fe_au_consistency"],
            conflict=bool(r["fe_au_conflict"]), task=r["task"] or "", template_id=extra.get("template_id") or "",
            conversations=[{"role": t.get("role") or "", "content": t.get("content") or ""}
                           for t in extra.get("conversations") or []],
            image=(image or {}).get("bytes") if image else None,
        )


def load_stats(out_dir: Path | str | BuildDir) -> BuildStats:
    """Read a build (its manifest, shards and rejects; a folder or a URL) into statistics. Raises NotABuild
    (a FileNotFoundError) when it has no manifest."""
    build = BuildDir(out_dir)
    manifest = build.manifest

    files: list[tuple[Path, int]] = []
    stat_rows: list[dict[str, Any]] = []
    for path in build.shards():
        table = build.parquet(path).read(columns=STAT_COLUMNS)
        files.append((path, table.num_rows))
        stat_rows += table.to_pylist()

    faces: dict[str, Face] = {}
    for r in stat_rows:
        faces.setdefault(r["face_id"], Face(
            emotion=_label(r["emotion"]), au_present=list(r["au_present"] or []),
            consistency=r["fe_au_consistency"], conflict=bool(r["fe_au_conflict"]), source=str(r["source"]),
        ))
    tasks_by_split: dict[str, Counter[str]] = {}
    for r in stat_rows:
        tasks_by_split.setdefault(str(r["split"]), Counter())[str(r["task"])] += 1

    return BuildStats(
        build=build,
        manifest=manifest,
        au_vocabulary=list(manifest.au_vocabulary),
        rows=len(stat_rows),
        rows_by_split=dict(sorted(Counter(str(r["split"]) for r in stat_rows).items())),
        rows_by_task=dict(sorted(Counter(str(r["task"]) for r in stat_rows).items())),
        rows_by_emotion=_sorted_labels(Counter(_label(r["emotion"]) for r in stat_rows)),
        tasks_by_split={s: dict(sorted(c.items())) for s, c in sorted(tasks_by_split.items())},
        faces=faces,
        rejects=_reject_reasons(build, manifest.counts.rejected_by_reason),
        _files=files,
        _stat_rows=stat_rows,
    )


def _reject_reasons(build: BuildDir, by_input: dict[str, int]) -> list[RejectReason]:
    records: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for path in build.reject_files():
        for r in build.parquet(path).read(columns=["source_item", "stage", "reason", "detail"]).to_pylist():
            key = f"{r['stage']}/{r['reason']}"
            records[key] += 1
            if key not in examples or (r["detail"] and not examples[key].partition(": ")[2]):
                examples[key] = f"{r['source_item']}: {r['detail']}" if r["detail"] else str(r["source_item"])
    out = []
    for key in sorted(set(records) | set(by_input)):
        stage, _, reason = key.partition("/")
        out.append(RejectReason(stage, reason, int(by_input.get(key, 0)), records[key], examples.get(key, "")))
    return out


def _label(emotion: str | None) -> str:
    return emotion if emotion else UNLABELLED


def _sorted_labels(counter: Counter[str]) -> dict[str, int]:
    """Alphabetical, with unlabelled faces last."""
    return dict(sorted(counter.items(), key=lambda kv: (kv[0] == UNLABELLED, kv[0])))


def _au_number(code: str) -> tuple[int, str]:
    digits = "".join(ch for ch in code if ch.isdigit())
    return (int(digits) if digits else 10_000, code)
