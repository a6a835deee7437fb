"""Turn pipeline objects into rows of the record and reject schemas."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import apache_beam as beam

from pipeline.domain.record import Instruction, Reject, Sample
from pipeline.domain.splits import assign_split


def _round(values, digits: int = 2) -> list:
    return [[round(float(v), digits) for v in point] for point in values]


def _vector(values, digits: int = 3) -> list | None:
    return None if values is None else [None if v is None else round(float(v), digits) for v in values]


def face_columns(s: Sample, split: str, versions: dict[str, str]) -> dict[str, Any]:
    """The columns every row of one face shares: provenance, crop, geometry, labels, AUs, versions."""
    item = s.item
    yaw, pitch, roll = s.pose
    return {
        "face_id": s.face_id,
        "source": item.source,
        "source_item": item.source_item,
        "subject_id": item.subject_id,
        "split": split,
        "image_sha256": s.image_sha256,
        "frame_index": item.frame_index,
        "face_index": s.face_index,
        "image": {"bytes": s.crop_jpeg, "path": f"{s.face_id}.jpg"},
        "source_width": s.source_width,
        "source_height": s.source_height,
        "bbox": [round(v, 2) for v in s.bbox],
        "landmarks_5": _round(s.landmarks_5),
        "landmarks_5_aligned": _round(s.landmarks_5_aligned),
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "face_size_px": s.face_size_px,
        "low_resolution": s.low_resolution,
        "blur_score": s.blur_score,
        "num_faces_detected": s.num_faces_detected,
        "detect_attempt": s.detect_attempt,
        "emotion": item.emotion,
        "emotion_raw": item.emotion_raw,
        "emotion_source": f"corpus:{item.source}" if item.emotion else None,
        "au_intensity": [round(float(v), 3) for v in s.au_intensity],
        "au_present": list(s.au_present),
        "au_source": s.au_source,
        # Set only for items with corpus AU labels (null otherwise: au_intensity is then the model's estimate).
        "au_model_intensity": _vector(s.au_model_intensity),
        "au_model_present": s.au_model_present,
        "au_model_source": s.au_model_source,
        "au_label_intensity": _vector(s.au_label_intensity),
        "au_label_present": s.au_label_present,
        "au_label_graded": s.au_label_graded,
        "au_label_source": s.au_label_source,
        "au_annotated": s.au_annotated,
        "blendshapes": [round(float(v), 4) for v in s.blendshapes],
        "face_measures": _vector(s.face_measures, 5),
        "fe_au_consistency": s.fe_au_consistency,
        "evidence_aus": list(s.evidence_aus),
        "fe_au_conflict": s.fe_au_conflict,
        **versions,
    }


def instruction_columns(inst: Instruction) -> dict[str, Any]:
    """The columns of one conversation about a face."""
    return {
        "sample_id": inst.sample_id,
        "task": inst.task,
        "template_id": inst.template_id,
        "conversations": inst.conversations,
        "text_source": inst.text_source,
        "llm_status": inst.llm_status,
        "llm_model": inst.llm_model,
        "llm_detail": inst.llm_detail,
        "grounding_verdict": inst.grounding_verdict,
        "grounding_reason": inst.grounding_reason,
    }


def instruction_row(inst: Instruction, split: str, versions: dict[str, str]) -> dict[str, Any]:
    """One output row: the face's columns and the conversation's."""
    return {**face_columns(inst.sample, split, versions), **instruction_columns(inst)}


class ToRows(beam.DoFn):
    """Instruction -> output row, with its split. The rows of one face arrive one after the other, so the
    face's shared columns are computed once and reused for its next rows (a one-entry cache)."""

    def __init__(self, split_ratios: dict[str, float], split_seed: int, versions: dict[str, str]) -> None:
        self.split_ratios = split_ratios
        self.split_seed = split_seed
        self.versions = versions
        self._last: tuple[Sample | None, dict[str, Any]] = (None, {})

    def process(self, inst: Instruction) -> Iterator[dict[str, Any]]:
        last = self._last  # read once: threads of one worker may share this DoFn
        if last[0] is inst.sample:
            face = last[1]
        else:
            split = assign_split(inst.sample, self.split_ratios, self.split_seed)
            face = face_columns(inst.sample, split, self.versions)
            self._last = (inst.sample, face)
        yield {**face, **instruction_columns(inst)}


def reject_row(reject: Reject, versions: dict[str, str]) -> dict[str, Any]:
    row = asdict(reject)
    row["params_hash"] = versions["params_hash"]
    row["pipeline_version"] = versions["pipeline_version"]
    return row
