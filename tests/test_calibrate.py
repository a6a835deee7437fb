"""`fea calibrate`: a whole AU head learned from FACS-coded builds, judged on subjects it never saw."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SCHEMAS

from pipeline.au.fit import fit_head
from pipeline.au.head import AUHead, feature_names
from pipeline.au.measures import MeshMeasures
from pipeline.au.training_data import FaceTable, subset
from pipeline.cli import main
from pipeline.domain.vocabulary import load_au_vocabulary

CODES = [row["code"] for row in load_au_vocabulary(SCHEMAS / "au_vocabulary.csv")]
NAMES = json.loads((SCHEMAS / "blendshapes.json").read_text())["names"]
FEATURES = feature_names(NAMES, MeshMeasures.load(SCHEMAS / "mesh_measures.json").names)
# A learned head without appearance features (the default head before they were added): the synthetic faces
# below have blendshapes and measures only.
LEARNED = Path(__file__).parent / "fixtures" / "au_head_learned_geometry_only.json"
DEFAULT = AUHead.load(LEARNED, CODES)


def coded_faces(n_subjects: int = 30, per_subject: int = 4, seed: int = 0) -> FaceTable:
    """Faces whose AU12 and AU14 codes follow the smile blendshapes (5% of codes flipped), AU5 follows browDown
    (AU14 and AU5 as stand-ins for AUs the default head reads from other features: only a learned model finds
    them), AU9 is coded on only 2 faces, AU20 on 6, and AU43 is not coded by this corpus at all (NaN)."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    x = rng.random((n, len(FEATURES))) * 0.3
    smile = rng.random(n) < 0.4
    brow = rng.random(n) < 0.3
    for name in ("bs:mouthSmileLeft", "bs:mouthSmileRight"):
        x[smile, FEATURES.index(name)] += 0.5
    x[brow, FEATURES.index("bs:browDownLeft")] += 0.4
    labels = np.zeros((n, len(CODES)))
    labels[:, CODES.index("AU12")] = labels[:, CODES.index("AU14")] = np.where(smile ^ (rng.random(n) < 0.05), 3.0, 0)
    labels[:, CODES.index("AU5")] = np.where(brow, 2.0, 0.0)
    labels[:2, CODES.index("AU9")] = 3.0
    labels[:6, CODES.index("AU20")] = 3.0
    labels[:, CODES.index("AU43")] = np.nan
    groups = [f"S{i // per_subject:03d}" for i in range(n)]
    return FaceTable(["synthetic"], CODES, FEATURES, x, labels, np.zeros_like(labels), groups, [None] * n,
                     ["lab"] * n)


def test_learns_coded_aus_and_scores_them_on_unseen_subjects() -> None:
    head, fits = fit_head(coded_faces(), DEFAULT, min_positives=10)
    by_code = {f.code: f for f in fits}
    assert by_code["AU12"].cv["f1"] >= 0.85  # whichever model cross-validated best
    for code in ("AU14", "AU5"):
        assert by_code[code].kind == "logistic" and head.origin[code] == "fitted"
        assert by_code[code].cv["f1"] >= 0.85, by_code[code].cv  # held-out subjects, 5% label noise for AU14
        assert head.quality[code]["source"] == "subject-disjoint cross-validation"
    test = coded_faces(seed=1)  # new faces of new subjects
    head.bind(FEATURES)
    predicted = head.intensities(test.features) >= 1.0
    for code in ("AU12", "AU14", "AU5"):
        truth = test.labels[:, CODES.index(code)] > 0
        pred = predicted[:, CODES.index(code)]
        assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) >= 0.85, code


def test_features_that_barely_move_in_the_training_faces_are_not_learned_from() -> None:
    """A blendshape that is all but dead in the training faces (cheekSquint, noseSneer on 48 px CK+ faces) may
    still separate an AU there by chance; on photos where it does move, its weight would read noise as the AU."""
    faces = coded_faces()
    rng = np.random.default_rng(1)
    row = CODES.index("AU20")
    present = rng.random(len(faces.features)) < 0.4
    faces.labels[:, row] = np.where(present, 3.0, 0.0)
    for name, spread in (("bs:cheekSquintLeft", 0.004), ("bs:noseSneerLeft", 0.04)):  # still, and moving
        faces.features[:, FEATURES.index(name)] = spread * present + rng.normal(scale=spread / 8, size=len(present))
    base = copy.deepcopy(DEFAULT)
    base.weights[base.codes.index("AU43")] = 0.0  # a base score that reads only a still feature: still itself
    base.weights[base.codes.index("AU43"), base.features.index("bs:cheekPuff")] = 1.0
    faces.features[:, FEATURES.index("bs:cheekPuff")] = 0.01
    moved = replace(faces, features=faces.features + rng.normal(scale=0.01, size=faces.features.shape))
    head, fits = fit_head(faces, base, min_positives=10, views=(faces, moved))
    still = head.meta["still_features"]
    assert {"bs:cheekSquintLeft", "bs:cheekPuff", "base:AU43"} <= set(still)
    assert "bs:noseSneerLeft" not in still and "bs:cheekSquintLeft" not in head.features
    assert head.weights[row, head.features.index("bs:noseSneerLeft")] > 0  # the same evidence, where it moves
    fit = {f.code: f for f in fits}["AU20"]
    assert fit.kind == "logistic" and fit.cv["f1"] > 0.8
    # The head computes what the fitted model computes: its weights, mapped back past the left-out columns.
    base.bind(FEATURES)
    inputs = np.concatenate([faces.features, base.scores(faces.features)[:, [base.codes.index(c) for c in CODES]]],
                            axis=1)
    assert fit.weights[[FEATURES.index("bs:cheekSquintLeft"), len(FEATURES) + CODES.index("AU43")]].tolist() == [0, 0]
    head.bind(FEATURES)
    assert np.allclose(head.scores(faces.features)[:, row], inputs @ fit.weights + fit.bias, atol=1e-5)


def test_rare_and_uncoded_aus_keep_the_base_head() -> None:
    head, fits = fit_head(coded_faces(), DEFAULT, min_positives=10)
    by_code = {f.code: f for f in fits}
    assert not by_code["AU9"].fitted and by_code["AU9"].positives == 2 and "fewer than 3" in by_code["AU9"].reason
    assert head.origin["AU9"] == f"base:{DEFAULT.tag}" and "kept_base" in head.quality["AU9"]
    # Too rare for its own model, enough to re-choose the base head's threshold if that scores better.
    assert by_code["AU20"].kind in ("base", "base-threshold") and "f1" in head.quality["AU20"]
    # AU43 is not coded: its faces are unknown, never negatives.
    assert by_code["AU43"].positives == 0 and by_code["AU43"].negatives == 0 and not by_code["AU43"].fitted
    head.bind(FEATURES)
    DEFAULT.bind(FEATURES)
    x = coded_faces().features
    kept = [CODES.index("AU9"), CODES.index("AU43")]
    assert np.allclose(head.intensities(x)[:, kept], DEFAULT.intensities(x)[:, kept], atol=1e-5)


def test_builds_without_au_codes_are_a_clear_error(tmp_path: Path, capsys) -> None:
    faces = coded_faces()
    faces.labels[:] = np.nan
    with pytest.raises(ValueError, match="no corpus AU codes"):
        fit_head(faces, DEFAULT)
    build = write_build(tmp_path / "plain", faces)
    assert main(["calibrate", str(build), "-o", str(tmp_path / "h.json"), "--appearance", "0",
                 "--base", str(LEARNED)]) == 2
    assert "no corpus AU codes" in capsys.readouterr().err and not (tmp_path / "h.json").exists()


def test_appearance_from_builds_without_crops_is_a_clear_error(tmp_path: Path, capsys) -> None:
    build = write_build(tmp_path / "plain", coded_faces())  # rows without the aligned crop (image)
    assert main(["calibrate", str(build), "-o", str(tmp_path / "h.json")]) == 2
    assert "no aligned crops" in capsys.readouterr().err and not (tmp_path / "h.json").exists()


def write_build(folder: Path, faces: FaceTable) -> Path:
    """The columns calibration reads, as a build writes them."""
    n_bs = len(NAMES)
    rows = [{"face_id": f"f{i}", "source": "lab", "source_item": f"{i}.png", "subject_id": faces.groups[i],
             "emotion": None, "blendshapes": list(x[:n_bs]), "face_measures": list(x[n_bs:]),
             "au_intensity": [0.0] * len(CODES),
             "au_label_intensity": [None if np.isnan(v) else float(v) for v in faces.labels[i]]}
            for i, x in enumerate(faces.features)]
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    measures = MeshMeasures.load(SCHEMAS / "mesh_measures.json")
    (folder / "manifest.json").write_text(json.dumps({"au_vocabulary": CODES, "blendshape_names": NAMES,
                                                      "face_measure_names": measures.names}))
    return folder


def test_cli_writes_the_same_head_twice_and_reports_each_au(tmp_path: Path, capsys) -> None:
    build = write_build(tmp_path / "b", coded_faces())
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    prior = ["--base", str(LEARNED), "--appearance", "0"]
    assert main(["calibrate", str(build), "-o", str(a), *prior]) == 0
    out = capsys.readouterr().out
    assert main(["calibrate", str(build), "-o", str(b), *prior]) == 0
    assert a.read_bytes() == b.read_bytes()
    head = json.loads(a.read_text())
    assert head["format"] == "fea-au-head/1" and head["version"].startswith("fit-")
    assert head["fitted_on"] == ["lab (120 faces)"] and head["base"] == DEFAULT.tag
    assert "AU12" in out and "learned (C=" in out and "base head: " in out and f"--set au.head={a}" in out


# --- end to end: a CK+-layout corpus -> fea calibrate -> a build of other subjects with the learned head ----


def ckplus_corpus(root: Path, rows: list[dict], wild: Path) -> Path:
    """The CK+ release layout: one sequence (two frames) per photo, FACS and Emotion files for its peak.
    FACS codes: AU12 and AU14 on happy photos (AU14 as a stand-in for an AU the default head reads otherwise:
    only a learned model finds it), AU1+AU2+AU25 on surprised ones, none on neutral ones."""
    codes = {"happiness": ["12 3", "14 3"], "surprise": ["1 2", "2 2", "25 0"], "neutral": []}
    emotion_code = {"happiness": 5, "surprise": 7, "neutral": 0}
    for i, row in enumerate(rows):
        subject, take = f"S{i:03d}", "001"
        seq = root / "cohn-kanade-images" / subject / take
        seq.mkdir(parents=True)
        for frame in (1, 2):
            shutil.copy(wild / "images" / row["image"], seq / f"{subject}_{take}_{frame:08d}.png")
        peak = f"{subject}_{take}_00000002"
        (root / "FACS" / subject / take).mkdir(parents=True)
        (root / "FACS" / subject / take / f"{peak}_facs.txt").write_text(
            "".join(f"   {c.split()[0]}.0000000e+00   {c.split()[1]}.0000000e+00\n" for c in codes[row["emotion"]]))
        (root / "Emotion" / subject / take).mkdir(parents=True)
        (root / "Emotion" / subject / take / f"{peak}_emotion.txt").write_text(
            f"   {emotion_code[row['emotion']]}.0000000e+00\n")
    return root


@pytest.mark.slow
def test_ckplus_build_calibrates_a_head_that_works_on_other_subjects(tmp_path: Path, wild_dir: Path) -> None:
    rows = [r for r in csv.DictReader((wild_dir / "labels.csv").open())
            if r["emotion"] in ("happiness", "surprise", "neutral")]
    train, test = rows[0::2], rows[1::2]
    corpus = ckplus_corpus(tmp_path / "ckplus", train, wild_dir)
    coded = tmp_path / "coded"
    assert main(["build", "--no-progress", "--no-validate", "--source", f"ckplus:{corpus}", "-o", str(coded)]) == 0
    head_file = tmp_path / "head.json"
    assert main(["calibrate", str(coded), "-o", str(head_file), "--min-positives", "8"]) == 0
    head = json.loads(head_file.read_text())
    assert head["quality"]["AU12"]["f1"] >= 0.8  # whichever model cross-validated best
    assert head["aus"]["AU14"]["origin"] == "fitted" and head["quality"]["AU14"]["f1"] >= 0.8
    assert head["fitted_on"][0].startswith("ckplus")

    plain = tmp_path / "plain"
    (plain / "images").mkdir(parents=True)
    with (plain / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "emotion"])
        for row in test:
            shutil.copy(wild_dir / "images" / row["image"], plain / "images" / row["image"])
            writer.writerow([row["image"], ""])
    out = tmp_path / "held-out"
    assert main(["build", "--no-progress", "--no-validate", "--source", f"csv:{plain},image_dir=images",
                 "--set", f"au.head={head_file}", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["au_head"]["version"] == head["version"] and manifest["au_head"]["fitted_on"] == head["fitted_on"]
    table = pa.concat_tables(pq.read_table(f, columns=["source_item", "au_present", "au_source"])
                             for f in sorted((out / "data").glob("*.parquet")))
    assert all(head["version"] in r for r in table.column("au_source").to_pylist())
    for au in ("AU12", "AU14"):
        predicted = {r["source_item"].split("/")[-1]: au in r["au_present"] for r in table.to_pylist()}
        truth = {r["image"]: r["emotion"] == "happiness" for r in test if r["image"] in predicted}
        tp = sum(predicted[k] and truth[k] for k in truth)
        f1 = 2 * tp / (sum(predicted[k] for k in truth) + sum(truth.values()))
        assert f1 >= 0.8, (au, f1)


# --- neutral faces as negatives, and intensities fitted to coded FACS levels --------------------------------


def faces_with_neutrals(seed: int = 0) -> FaceTable:
    """Per subject: two peaks whose AU12 code and FACS level follow the smile's strength, and a neutral face whose
    resting mouth reads as a faint smile for some people (uncoded, labelled neutral: a negative for every AU)."""
    rng = np.random.default_rng(seed)
    n_subjects = 40
    rows, labels, graded, neutral, groups = [], [], [], [], []
    for s in range(n_subjects):
        rest = rng.uniform(0.0, 0.35)  # this person's resting smile reading
        for kind in ("peak", "peak", "neutral"):
            x = rng.random(len(FEATURES)) * 0.05
            level = np.full(len(CODES), 0.0)
            if kind == "peak" and rng.random() < 0.6:
                strength = rng.uniform(0.3, 1.0)
                level[CODES.index("AU12")] = 1 + round(4 * strength - 0.2)
                x[FEATURES.index("bs:mouthSmileLeft")] = x[FEATURES.index("bs:mouthSmileRight")] = rest + strength
            elif kind == "neutral":
                x[FEATURES.index("bs:mouthSmileLeft")] = x[FEATURES.index("bs:mouthSmileRight")] = rest
            rows.append(x)
            labels.append(level if kind == "peak" else np.full(len(CODES), np.nan))
            graded.append(level > 0)
            neutral.append(kind == "neutral")
            groups.append(f"S{s:03d}")
    n = len(rows)
    faces = FaceTable(["synthetic"], CODES, FEATURES, np.array(rows), np.array(labels), np.zeros((n, len(CODES))),
                      groups, ["neutral" if k else None for k in neutral], ["lab"] * n, graded=np.array(graded))
    faces.neutral = np.array(neutral)
    faces.labels[faces.neutral] = 0.0  # what read_faces(neutral_negatives=True) does
    return faces


def test_neutral_faces_keep_each_au_quiet_and_are_reported() -> None:
    faces = faces_with_neutrals()
    head, fits = fit_head(faces, DEFAULT, min_positives=10, neutral_rate=0.02)
    au12 = {f.code: f for f in fits}["AU12"]
    assert "neutral_rate" in au12.cv and au12.cv["neutral_faces"] == 40
    head.bind(FEATURES)
    test = faces_with_neutrals(seed=1)  # other people
    found = head.intensities(test.features)[:, CODES.index("AU12")] >= 1.0
    assert found[test.neutral].mean() <= 0.1  # quiet on resting faces of new people
    truth = test.labels[:, CODES.index("AU12")] > 0
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) >= 0.8
    summary = head.meta["summary"]
    assert summary["neutral_faces"] == 40 and 0 <= summary["aus_per_neutral_face"] <= 0.5


def test_intensity_slope_is_fitted_to_the_coded_levels() -> None:
    faces = faces_with_neutrals()
    head, fits = fit_head(faces, DEFAULT, min_positives=10, neutral_rate=0.02)
    q = head.quality["AU12"]
    assert q["levels"] > 20 and q["intensity_mae_found"] is not None
    row = CODES.index("AU12")
    assert head.slope[row] != head.slope_below[row]  # fitted above the threshold, the base's below
    untuned, _ = fit_head(faces, DEFAULT, min_positives=10, neutral_rate=0.02)
    untuned.slope[:] = 20.0  # levels pinned near E: what an unfitted scale does
    test = faces_with_neutrals(seed=1)
    levels = test.graded[:, row]
    fitted_error = np.abs(head.bind(FEATURES).intensities(test.features)[levels, row] - test.labels[levels, row])
    pinned_error = np.abs(untuned.bind(FEATURES).intensities(test.features)[levels, row] - test.labels[levels, row])
    assert fitted_error.mean() < pinned_error.mean()
    assert "intensity_mae" in head.meta["summary"]


def test_aus_found_too_rarely_start_their_levels_where_the_corpus_grades_found_aus() -> None:
    from pipeline.au.levels import MIN_FOUND

    faces = faces_with_neutrals()
    rare, row = CODES.index("AU20"), CODES.index("AU12")
    peaks = np.flatnonzero(~faces.neutral)[::6][:4]  # four people's peaks: too few to fit AU20's own levels
    faces.labels[peaks, rare], faces.graded[peaks, rare] = 5.0, True
    _, fits = fit_head(faces, DEFAULT, min_positives=10, neutral_rate=0.02)
    graded = faces.graded[:, row] & (faces.labels[:, row] > 0)
    found = graded & (np.nan_to_num(fits[row].held_out) > 0)
    assert found.sum() >= MIN_FOUND and (graded & ~found).any()
    if found.sum() % 2:  # an even number of AU12's found faces, graded B and C in turn: any start from B to C fits
        faces.graded[np.flatnonzero(found)[-1], row] = False  # them equally, and the lowest, B, wins
        graded, found = graded & faces.graded[:, row], found & faces.graded[:, row]
    faces.labels[np.flatnonzero(found), row] = np.resize([2.0, 3.0], found.sum())
    # AU12's missed faces, and AU20's own faces, graded E: a pool that took either in would start at C.
    faces.labels[graded & ~found, row] = 5.0
    head, fits = fit_head(faces, DEFAULT, min_positives=10, neutral_rate=0.02)
    assert np.array_equal(found, graded & (np.nan_to_num(fits[row].held_out) > 0))  # levels do not move the AUs
    assert fits[rare].fitted and head.quality["AU20"]["levels_from"].startswith("pooled")
    assert "levels_from" not in head.quality["AU12"]
    assert head.level_at[rare] == fits[rare].level_at == 2.0
    figures = head.quality["AU20"]
    assert figures["intensity_mae"] == fits[rare].cv["intensity_mae"] > 0  # measured with the pooled start


def test_facs_scores_count_neutral_faces_apart_and_levels_with_misses() -> None:
    from pipeline.au.facs_scores import score_head

    faces = faces_with_neutrals()
    row = CODES.index("AU12")
    intensity = np.full(faces.labels.shape, np.nan)
    truth = faces.labels[:, row] > 0
    intensity[:, row] = np.where(truth, faces.labels[:, row], 0.5)  # every coded AU12 found at its own level
    intensity[np.flatnonzero(faces.neutral)[:4], row] = 2.0  # ... and 4 neutral faces wrongly given one
    figures = score_head(faces, intensity)
    au12 = figures["aus"]["AU12"]
    assert au12["f1"] == 1.0 and au12["neutral_rate"] == pytest.approx(4 / 40)  # neutral faces are not in F1
    assert figures["aus_per_neutral_face"] == pytest.approx(4 / 40) and figures["intensity_mae"] == 0.0
    assert set(figures["aus"]) == {"AU12"}  # unscored AUs (NaN) are not judged
    intensity[np.flatnonzero(truth)[0], row] = 0.5  # one coded AU missed: counts in recall and the level error
    missed = score_head(faces, intensity)
    assert missed["aus"]["AU12"]["recall"] < 1.0 and missed["intensity_mae"] > 0


def test_intervals_over_people_hold_the_figure_and_widen_when_people_disagree() -> None:
    from pipeline.au.facs_scores import intervals, score_head

    faces = faces_with_neutrals()
    row = CODES.index("AU12")
    truth = faces.labels[:, row] > 0
    neutral = np.flatnonzero(faces.neutral)
    agreeing = np.full(faces.labels.shape, np.nan)
    agreeing[:, row] = np.where(truth, faces.labels[:, row], 0.5)
    agreeing[neutral, row] = 0.5
    agreeing[neutral[::4], row] = 2.0  # every fourth person's resting face gets an AU
    disagreeing = agreeing.copy()  # the same people at rest show two AUs: people differ twice as much
    disagreeing[:, CODES.index("AU6")] = np.where(faces.neutral, 0.5, np.nan)
    disagreeing[neutral[::4], CODES.index("AU6")] = 2.0
    for intensity in (agreeing, disagreeing):
        point, bounds = score_head(faces, intensity), intervals(faces, intensity)
        for name in ("mean_f1", "aus_per_neutral_face", "intensity_mae"):
            assert bounds[name][0] <= point[name] <= bounds[name][1], name
    width = {name: np.diff(intervals(faces, i)["aus_per_neutral_face"])[0] for name, i in
             (("agreeing", agreeing), ("disagreeing", disagreeing))}
    assert width["disagreeing"] > 1.5 * width["agreeing"]  # the more people differ, the less a figure is known
    assert intervals(faces, agreeing) == intervals(faces, agreeing)  # deterministic
    assert intervals(faces, agreeing)["intensity_mae"] == [0.0, 0.0]  # every level right, for any people


def test_intervals_resample_people_not_faces() -> None:
    """A person filmed three times is one person: copies of each person's faces leave the intervals as they were
    (resampling faces would narrow them). The mean F1 is over the AUs the figure counts; one person is no
    interval, and without subject ids the resampling is over faces and says so."""
    from pipeline.au.facs_scores import intervals

    faces = faces_with_neutrals()
    rng = np.random.default_rng(3)
    intensity = np.full(faces.labels.shape, np.nan)
    for code in ("AU12", "AU6"):
        row = CODES.index(code)
        intensity[:, row] = np.where(rng.random(len(faces.features)) < 0.3, 2.0, 0.5)  # imperfect, both ways
    faces.labels[:, CODES.index("AU6")] = np.where(faces.neutral, 0.0, np.nan)
    faces.labels[np.flatnonzero(~faces.neutral)[:8], CODES.index("AU6")] = 0.0
    faces.labels[np.flatnonzero(~faces.neutral)[:2], CODES.index("AU6")] = 3.0  # 2 coded: below min_support 3
    once = intervals(faces, intensity)
    assert once["over"] == "people" and once["mean_f1"][0] < once["mean_f1"][1]
    thrice = subset(faces, [i for i in range(len(faces.features)) for _ in range(3)])
    # (min_support 1: the AUs counted in the mean must not change with the copies, which triple the support)
    assert intervals(thrice, np.repeat(intensity, 3, axis=0), min_support=1) == intervals(faces, intensity, 1)
    only_au12 = intensity.copy()
    only_au12[:, CODES.index("AU6")] = np.nan
    assert intervals(faces, only_au12)["mean_f1"] == once["mean_f1"]  # AU6 is not in the mean
    one_person = replace(faces, groups=["S000"] * len(faces.groups))
    assert intervals(one_person, intensity) == {}
    no_ids = replace(faces, groups=[f"item{i}" for i in range(len(faces.groups))])
    assert intervals(no_ids, intensity)["over"] == "faces"


def test_the_head_states_its_figures_with_their_intervals() -> None:
    from pipeline.au.accuracy import head_summary_lines

    head, _ = fit_head(faces_with_neutrals(), DEFAULT, min_positives=10, neutral_rate=0.02)
    summary = head.meta["summary"]
    low, high = summary["intervals"]["mean_f1"]
    assert low <= summary["mean_f1"] <= high and low < high
    lines = head_summary_lines({"summary": summary})
    assert f"(95% interval over people {low:.2f}-{high:.2f})" in lines[0]
    older = {k: v for k, v in summary.items() if k != "intervals"}  # a head file from before intervals
    assert "interval" not in " ".join(head_summary_lines({"summary": older}))
    assert "f1_by_au" not in summary["intervals"]  # each AU's own interval sits with its quality
    from pipeline.au.accuracy import accuracy_cells

    q = head.quality["AU12"]
    low, high = q["f1_interval"]
    assert low <= high and accuracy_cells(q)[0] == f"{q['f1']:.2f} ({low:.2f}-{high:.2f})"
    assert accuracy_cells({k: v for k, v in q.items() if k != "f1_interval"})[0] == f"{q['f1']:.2f}"


def test_resting_faces_make_identity_directions_costly() -> None:
    """A feature that differs between people at rest (identity) and happens to go with the AU in the training
    people is read less when the model is shown resting faces: the penalty is the score's spread across them."""
    from pipeline.au.invariant_logistic import Invariance, fit_linear

    rng = np.random.default_rng(0)
    people = rng.normal(size=80)
    present = rng.random(80) < 1 / (1 + np.exp(-2 * people))  # the confound: AU coded more on some faces' people
    peaks = np.c_[present + rng.normal(scale=0.3, size=80), people]
    resting = np.c_[rng.normal(scale=0.1, size=80), people + rng.normal(scale=0.05, size=80)]
    x, y = np.r_[peaks, resting], np.r_[present, np.zeros(80, dtype=bool)]
    neutral = np.r_[np.zeros(80, dtype=bool), np.ones(80, dtype=bool)]
    plain, _ = fit_linear(x, y, 0.03, Invariance(np.zeros_like(neutral)))
    penalised, _ = fit_linear(x, y, 0.03, Invariance(neutral))
    assert abs(penalised[1] / penalised[0]) < 0.6 * abs(plain[1] / plain[0])
    # new people at rest: the penalised score varies less between them, relative to the expression's effect
    assert np.std(resting @ penalised) / penalised[0] < np.std(resting @ plain) / plain[0]


def test_views_make_features_that_change_with_the_view_costly() -> None:
    """Two features tell the AU equally well, but one of them moves when the same photo is seen another way
    (e.g. reduced to 48 px grey): with the two views given, the model leans on the one that holds."""
    from pipeline.au.invariant_logistic import Invariance, fit_linear

    rng = np.random.default_rng(0)
    present = rng.random(200) < 0.4
    x = np.c_[present + rng.normal(scale=0.4, size=200), present + rng.normal(scale=0.4, size=200)]
    shift = np.c_[rng.normal(scale=0.02, size=100), rng.normal(loc=0.3, scale=0.5, size=100)]
    none = np.zeros(200, dtype=bool)
    plain, _ = fit_linear(x, present, 0.03, Invariance(none))
    held, _ = fit_linear(x, present, 0.03, Invariance(none, shift))
    assert 0.7 < plain[1] / plain[0] < 1.4
    assert held[1] / held[0] < 0.5 * plain[1] / plain[0]


def test_fit_head_takes_paired_views_and_records_them() -> None:
    faces = coded_faces()
    second = replace(faces, features=faces.features + np.random.default_rng(1).normal(scale=0.05,
                                                                                     size=faces.features.shape))
    head, _ = fit_head(faces, DEFAULT, min_positives=10, views=(faces, second))
    assert head.meta["view_pairs"] == len(faces.features)
    narrow = replace(second, features=second.features[:, :-1], feature_names=second.feature_names[:-1])
    with pytest.raises(ValueError, match="other face features"):
        fit_head(faces, DEFAULT, min_positives=10, views=(faces, narrow))


def test_levels_start_where_coders_grade_a_barely_found_au() -> None:
    """Coders grade most found AUs B-C, few A: the fitted level just above the threshold follows them, and the
    head file keeps it (and reads it back)."""
    from pipeline.au.head import intensity_from_score
    from pipeline.au.levels import fit_levels

    rng = np.random.default_rng(0)
    scores = rng.uniform(0.05, 3.0, 40)
    levels = np.clip(np.round(2.5 + scores / 1.5 + rng.normal(scale=0.3, size=40)), 1, 5)
    slope, level_at, error, found_error, _ = fit_levels(scores, levels, default=1.0, below=1.0)
    assert level_at > 1.0
    pinned = min(np.abs(intensity_from_score(scores, s) - levels).mean() for s in np.geomspace(0.02, 20, 121))
    assert found_error < pinned
    assert intensity_from_score(np.array([1e-6]), slope, 1.0, level_at)[0] == pytest.approx(level_at, abs=0.01)
    assert intensity_from_score(np.array([-1e-6]), slope, 1.0, level_at)[0] < 1.0  # below: not present


def test_a_head_round_trips_its_levels(tmp_path: Path) -> None:
    head = AUHead.load(SCHEMAS / "au_head.json", CODES)
    assert (head.level_at > 1).any()  # the default head's levels were fitted to CK+ FACS levels
    again = AUHead.load(head.write(tmp_path / "head.json"), CODES)
    assert np.array_equal(again.level_at, head.level_at) and again.content_version() == head.content_version()
    spec = json.loads((tmp_path / "head.json").read_text())
    spec["aus"]["AU1"]["level_at_threshold"] = 5.0
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="level_at_threshold"):
        AUHead.load(tmp_path / "bad.json", CODES)


def test_the_neutral_cap_holds_for_new_resting_faces() -> None:
    """With ~100 resting faces the 1% quantile is the second highest score; the cap takes the normal tail fitted
    to them where that is higher, so new people's resting faces pass it about as rarely as the rate says."""
    from pipeline.au.thresholds import Rule

    rng = np.random.default_rng(0)
    rule = Rule(np.ones(100, dtype=bool), neutral_rate=0.01)
    passed = []
    for _ in range(200):
        seen, new = rng.normal(size=100), rng.normal(size=1000)
        cap = rule.cap(seen)
        assert cap >= np.quantile(seen, 0.99)
        passed.append((new > cap).mean())
    assert np.mean(passed) <= 0.015
    empirical = [(rng.normal(size=1000) > np.quantile(rng.normal(size=100), 0.99)).mean() for _ in range(200)]
    assert np.mean(passed) < np.mean(empirical)
