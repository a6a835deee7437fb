"""The units that flow through the pipeline: a source item, the sample it becomes, a reject.

A `SourceItem` is one input (a photo, or one sampled frame of a video): the unit of accounting,
inputs = accepted + rejected. A `Sample` is one face found in an item and gathers what each stage
adds. A `Reject` records why an item left the pipeline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SourceItem:
    source: str
    source_item: str  # path relative to the corpus root (or an id); stable across machines
    uri: str  # where to read the bytes (absolute path)
    emotion: str | None = None  # canonical emotion from the corpus annotation
    emotion_raw: str | None = None  # the corpus' own label, before harmonisation
    subject_id: str | None = None
    split: str | None = None  # official split, when the corpus has one
    frame_index: int | None = None  # for frames sampled from a video
    meta: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None  # encoded image bytes, for corpora that store pixels in a table (FER2013, HF)
    # FACS coding shipped with the corpus (CK+, DISFA, BP4D, RAF-AU): code ("AU12") -> intensity on the 0-5
    # scale (1..5 = A..E, 0 = coded absent); see corpus_au.json. None: the corpus codes no AUs.
    au_labels: dict[str, float] | None = None
    # The AUs the corpus codes for this item (an AU outside it is unknown, not absent; BP4D codes 12).
    # None together with au_labels = full FACS coding: every AU not listed in au_labels is absent.
    au_annotated: list[str] | None = None
    # The AUs of au_labels whose FACS level (A-E) the corpus graded; the others were coded as occurrence only
    # (their 0-5 value is corpus_au.json's occurrence_intensity). What intensity calibration learns from.
    au_graded: list[str] | None = None

    @property
    def key(self) -> str:
        """Identity of the input for accounting and resume."""
        return f"{self.source}:{self.source_item}" + (
            f"#{self.frame_index}" if self.frame_index is not None else ""
        )


@dataclass
class Sample:
    """One face of one item, enriched stage by stage."""

    item: SourceItem
    image_sha256: str = ""
    pixels: np.ndarray | None = None  # decoded RGB uint8 HxWx3; dropped after alignment
    source_width: int = 0
    source_height: int = 0
    face_index: int = 0
    num_faces_detected: int = 0
    mesh: np.ndarray | None = None  # (478, 3) landmarks in source pixels (z in pixel-like units)
    blendshapes: np.ndarray | None = None  # (52,) scores in [0, 1]
    face_measures: np.ndarray | None = None  # FACS geometric measures of the mesh (mesh_measures.json)
    pose: tuple[float, float, float] = (0.0, 0.0, 0.0)  # yaw, pitch, roll in degrees
    bbox: list[float] = field(default_factory=list)
    landmarks_68: np.ndarray | None = None  # (68, 2) iBUG-68 points in source pixels (face-alignment backend)
    landmarks_5: np.ndarray | None = None
    landmarks_5_aligned: np.ndarray | None = None
    align_matrix: np.ndarray | None = None  # (2, 3) similarity transform source px -> aligned crop px
    detect_attempt: str = "original"  # which detection attempt found the face (detect.retries names the others)
    face_size_px: float = 0.0
    low_resolution: bool = False  # face_size_px under align.low_resolution_px: kept, flagged
    blur_score: float = 0.0
    crop_jpeg: bytes = b""
    fingerprint: Any = None  # pipeline.stages.fingerprint.Fingerprint: what dedup compares; dropped by dedup
    au_intensity: np.ndarray | None = None  # aligned to the AU vocabulary
    au_present: list[str] = field(default_factory=list)
    au_source: str = ""
    # au_intensity/au_present/au_source above are the *effective* AUs (what synergy and templates use). For an
    # item with corpus AU labels they are the corpus coding where annotated and the model estimate elsewhere;
    # the two inputs are kept below. Without corpus labels these stay None and the effective AUs are the model's.
    au_model_intensity: np.ndarray | None = None
    au_model_present: list[str] | None = None
    au_model_source: str | None = None
    au_label_intensity: list[float | None] | None = None  # vocabulary-aligned; None where not annotated
    au_label_present: list[str] | None = None
    au_label_graded: list[str] | None = None  # annotated AUs whose FACS level the corpus graded (not occurrence only)
    au_label_source: str | None = None
    au_annotated: list[str] | None = None  # vocabulary AUs the corpus annotates for this item
    fe_au_consistency: float | None = None
    evidence_aus: list[str] = field(default_factory=list)
    fe_au_conflict: bool = False

    @property
    def face_id(self) -> str:
        """Content-derived: the same face of the same bytes from the same source gets the same id."""
        frame = self.item.frame_index if self.item.frame_index is not None else -1
        raw = f"{self.item.source}|{self.image_sha256}|{frame}|{self.face_index}"
        return hashlib.sha256(raw.encode()).hexdigest()[:20]


@dataclass
class Reject:
    source: str
    source_item: str
    stage: str
    reason: str
    detail: str = ""
    image_sha256: str | None = None
    frame_index: int | None = None
    duplicate_of: str | None = None

    @classmethod
    def of(cls, item: SourceItem, stage: str, reason: str, detail: str = "", sha: str | None = None) -> Reject:
        return cls(item.source, item.source_item, stage, reason, detail[:500], sha, item.frame_index)


@dataclass
class Instruction:
    """One rendered conversation about one face: an output row of the dataset."""

    sample: Sample
    task: str
    template_id: str
    conversations: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": ...}], <image> once
    # Filled by the LLM stage (when the task is sent to an LLM) and the verify stage.
    llm_answers: dict[int, str] = field(default_factory=dict)  # conversation index -> LLM text
    llm_status: str | None = None  # None (not sent) | ok | hallucinated | failed | budget_exhausted | pending_batch
    llm_model: str | None = None
    llm_detail: str | None = None  # why the LLM text is not used
    text_source: str = "template"  # template | llm: where the assistant text in `conversations` comes from
    grounding_verdict: str | None = None  # grounded | ungrounded: the verifier on the final text
    grounding_reason: str | None = None  # what the verifier found wrong with the final text

    @property
    def sample_id(self) -> str:
        raw = f"{self.sample.face_id}|{self.task}|{self.template_id}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]
