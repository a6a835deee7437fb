"""Dedup: one copy of each face across all sources; the other copies become rejects that name the kept twin.

Candidates, found without comparing all pairs: faces whose source images' perceptual hashes
(`pipeline.stages.fingerprint`) differ in at most `max_hash_distance` bits. The hash is cut into
`max_hash_distance + 1` interleaved bands: two hashes that close agree exactly on at least one band
(pigeonhole), so grouping the faces by (band, value) puts every such pair in a common group (multi-index
hashing). A pair is judged once, in the first band it shares. What travels through that grouping is a
small tuple of plain values per face and band (order, ids, hash); the face thumbnails the second check
needs travel once per face, and are joined to the (few) candidate pairs by face.

- exact copies: two faces of files with the same SHA-256 and the same face index (identical bytes decode
  to identical pixels, hence identical hashes: they always meet);
- near copies: a candidate is a copy only if the second check agrees (`face_residual`): its two face regions, laid
on each other by their place in the source image, differ nowhere by more than `check.max_residual` after
normalising exposure. A re-encoded, resized or brightened copy passes; the same person photographed again
in the same setting with another expression (or a moment later) does not: the hash alone cannot tell
them apart, the face region can.

Decision, in one deterministic order (the source's place in params, then item id, frame, face index): a
face is rejected when a confirmed twin earlier in that order is kept, and the reject names that twin
(`duplicate_of`); so every reject has a kept copy, and which copy is kept does not depend on the run.
Faces of one input (two faces of a photo, frames of one clip) are never compared with each other: a clip's
frames follow its own sampling rules (`pipeline.sources.frames`).

Rejects: exact_duplicate, near_duplicate. docs/dedup.md has the measured false-merge and miss rates.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
import cv2
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.config import DedupConfig, FaceCheckConfig
from pipeline.domain.record import Sample
from pipeline.stages.base import REJECTS, Stage
from pipeline.stages.fingerprint import Fingerprint

STAGE = "dedup"
EXACT, NEAR = "exact_duplicate", "near_duplicate"


@dataclass(frozen=True)
class Face:
    """What candidate generation knows of one face: its place in the keep order, its ids and its hash."""

    order: tuple  # (source rank, source, source_item, frame or -1, face_index): the earliest copy is kept
    face_id: str
    sha: str
    phash: int = 0

    @property
    def key(self) -> tuple:
        return self.order[1:]

    @property
    def input(self) -> tuple:
        """The photo or clip the face comes from."""
        return self.order[1:3]

    @property
    def label(self) -> str:
        _, source, item, frame, _ = self.order
        return f"{source}:{item}" + (f"#{frame}" if frame >= 0 else "")


@dataclass(frozen=True)
class Pair:
    """A confirmed copy: `later` is a copy of `earlier` (earlier in the keep order)."""

    earlier: Face
    later: Face
    reason: str
    detail: str


def sample_key(sample: Sample) -> tuple:
    item = sample.item
    return (item.source, item.source_item, -1 if item.frame_index is None else item.frame_index, sample.face_index)


def record_of(sample: Sample, rank: dict[str, int]) -> tuple[tuple, tuple]:
    """A face as two tuples of plain values (Beam encodes them without pickling): its reference (order, face_id,
    sha, hash as a decimal string: Beam's fast coder takes 64-bit ints only) and its view (what the second
    check compares: thumbnail bytes, region, aspect ratio, detail)."""
    key, fp = sample_key(sample), sample.fingerprint
    order = (rank.get(key[0], len(rank)), *key)
    return (order, sample.face_id, sample.image_sha256, str(fp.phash)), view_of(fp)


def view_of(fp: Fingerprint) -> tuple:
    return fp.thumb.tobytes(), fp.box, fp.aspect, fp.detail


def fingerprint_of(view: tuple) -> Fingerprint:
    """The inverse of view_of (without the hash, which the second check does not read)."""
    thumb, box, aspect, detail = view
    side = math.isqrt(len(thumb))
    return Fingerprint(0, np.frombuffer(thumb, np.uint8).reshape(side, side), tuple(box), aspect, detail)


def face_of(ref: tuple) -> Face:
    order, face_id, sha, phash = ref
    return Face(tuple(order), face_id, sha, int(phash))


def bands(phash: int, bits: int, count: int) -> list[int]:
    """The hash cut into `count` interleaved bands (band j holds bits j, j + count, ...), each as an int."""
    values = np.unpackbits(np.frombuffer(phash.to_bytes((bits + 7) // 8, "big"), np.uint8))[-bits:]
    return [int.from_bytes(np.packbits(values[j::count]).tobytes(), "big") for j in range(count)]


def candidate_keys(ref: tuple, cfg: DedupConfig) -> Iterator[tuple[tuple, tuple]]:
    """The groups a face joins: one per band of its hash."""
    for j, value in enumerate(bands(int(ref[3]), cfg.hash_bits, cfg.max_hash_distance + 1)):
        yield (j, value), ref


def close_pairs(hashes: list[int], bits: int, radius: int) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance) for every i < j whose hashes differ in at most `radius` bits (one row at a time: memory
    stays linear in the group's size)."""
    words = (bits + 63) // 64
    packed = np.array([[(h >> (64 * w)) & 0xFFFFFFFFFFFFFFFF for w in range(words)] for h in hashes], np.uint64)
    for i in range(len(hashes) - 1):
        distances = np.bitwise_count(packed[i + 1:] ^ packed[i]).sum(axis=1)
        for k in np.flatnonzero(distances <= radius):
            yield i, i + 1 + int(k), int(distances[k])


def on_region(fp: Fingerprint, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The part of `fp`'s thumbnail that covers `box` (source-relative coordinates), resampled to size x size."""
    x0, y0, x1, y1 = fp.box
    side = fp.thumb.shape[0]
    sx, sy = side / (x1 - x0), side / (y1 - y0)  # thumbnail px per unit of source-relative coordinates
    scale_x, scale_y = (box[2] - box[0]) * sx / size, (box[3] - box[1]) * sy / size
    # Pixel centres: output pixel i samples the thumbnail at (i + 0.5) * scale + offset - 0.5.
    matrix = np.array([[scale_x, 0, (box[0] - x0) * sx + 0.5 * scale_x - 0.5],
                       [0, scale_y, (box[1] - y0) * sy + 0.5 * scale_y - 0.5]], np.float32)
    return cv2.warpAffine(fp.thumb.astype(np.float32), matrix, (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def at_detail(thumb: np.ndarray, detail: float) -> np.ndarray:
    """The thumbnail with only the detail a source of `detail` pixels per thumbnail pixel holds."""
    size = thumb.shape[0]
    coarse = max(4, round(size * detail))
    return cv2.resize(cv2.resize(thumb, (coarse, coarse), interpolation=cv2.INTER_AREA), (size, size),
                      interpolation=cv2.INTER_LINEAR)


def _standardised(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    values = image[keep]
    return (image - values.mean()) / max(float(values.std()), 1e-3)


def residual_limit(detail: float, check: FaceCheckConfig) -> float:
    """The largest residual of a copy at `detail` source px per thumbnail px: `max_residual` from `full_detail`
    up, `max_residual_low_detail` at 1 and under (compression and resampling change small images more)."""
    if detail >= check.full_detail:
        return check.max_residual
    if detail <= 1.0:
        return check.max_residual_low_detail
    share = math.log(check.full_detail / detail) / math.log(check.full_detail)
    return check.max_residual + share * (check.max_residual_low_detail - check.max_residual)


def same_photo(a: Fingerprint, b: Fingerprint, check: FaceCheckConfig) -> tuple[bool, float, str]:
    """The second check as a verdict: (copy?, residual, what was compared or why not)."""
    residual, why = face_residual(a, b, check)
    limit = residual_limit(min(a.detail, b.detail), check)
    return residual <= limit, residual, why or f"face regions differ by {residual:.3f} <= {limit:.3f}"


def face_residual(a: Fingerprint, b: Fingerprint, check: FaceCheckConfig) -> tuple[float, str]:
    """The largest local difference of two face regions, in standard deviations of their grey levels, where
    they overlap in source-relative coordinates, at the coarser one's detail; (inf, why) when they cannot
    be the same photograph (other aspect ratio, other place in the image, too little to compare)."""
    if abs(math.log(a.aspect / b.aspect)) > check.max_aspect_change:
        return math.inf, f"aspect ratios {a.aspect:.3f} and {b.aspect:.3f}"
    common = (max(a.box[0], b.box[0]), max(a.box[1], b.box[1]), min(a.box[2], b.box[2]), min(a.box[3], b.box[3]))
    inter = max(0.0, common[2] - common[0]) * max(0.0, common[3] - common[1])
    union = sum((box[2] - box[0]) * (box[3] - box[1]) for box in (a.box, b.box)) - inter
    if inter <= 0 or inter / union < check.min_box_iou:
        return math.inf, f"face regions overlap {inter / union if union > 0 else 0:.2f} < {check.min_box_iou}"
    size = check.thumb_size
    ta, tb = on_region(a, common, size), on_region(b, common, size)
    detail = min(a.detail, b.detail, 1.0)
    if detail < 1.0:  # compare at the coarser source's resolution: resampling alone must not count as a change
        ta, tb = (at_detail(t, detail) for t in (ta, tb))
    clipped = (np.maximum(ta, tb) >= check.ignore_above) | (np.minimum(ta, tb) <= check.ignore_below)
    keep = cv2.dilate(clipped.astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
    if check.border_px:
        edge = check.border_px
        keep[:edge], keep[-edge:], keep[:, :edge], keep[:, -edge:] = False, False, False, False
    if keep.mean() < check.min_compared:
        return math.inf, f"{keep.mean():.0%} of the face regions comparable < {check.min_compared:.0%}"
    weight = keep.astype(np.float32)
    diff = (_standardised(ta, keep) - _standardised(tb, keep)) * weight
    if check.blur_px > 0:  # a weighted (normalised) blur: excluded pixels neither count nor dilute
        diff = cv2.GaussianBlur(diff, (0, 0), check.blur_px) / np.maximum(
            cv2.GaussianBlur(weight, (0, 0), check.blur_px), 1e-3)
    return float(np.abs(diff[keep]).max()), ""


# How many pairs the search found and the second check judged. Counted by plain functions: finding pairs
# takes no face in and sends none on (the faces pass through DedupStage, a Stage with the accounting).
PAIR_COUNTERS = {what: Metrics.counter(STAGE, f"pairs.{what}") for what in ("exact", "candidates", "confirmed",
                                                                              "distinct")}


def find_candidates(group: tuple[tuple, Iterable[tuple]], cfg: DedupConfig) -> Iterator:
    """One band group -> exact copies (`Pair`s, tagged EXACT) and near candidates ((pair id, (earlier, later,
    hash distance)) on the main output): pairs within the Hamming radius, of different inputs, met in the
    first band they share."""
    (band, _), members = group
    members = list(members)
    if len(members) < 2:  # most groups: nothing to compare
        return
    faces = sorted((face_of(ref) for ref in members), key=lambda f: f.order)
    cut = [bands(f.phash, cfg.hash_bits, cfg.max_hash_distance + 1)[:band] for f in faces]
    for i, j, distance in close_pairs([f.phash for f in faces], cfg.hash_bits, cfg.max_hash_distance):
        earlier, later = faces[i], faces[j]
        if earlier.input == later.input:
            continue  # two faces of one photo, or frames of one clip
        if any(x == y for x, y in zip(cut[i], cut[j], strict=True)):
            continue  # judged in the group of an earlier band they share
        if earlier.sha == later.sha:  # the same file: the same face if it has the same index, else another
            if earlier.order[-1] == later.order[-1]:
                PAIR_COUNTERS["exact"].inc()
                yield beam.pvalue.TaggedOutput(EXACT, Pair(
                    earlier, later, EXACT, f"the same file (sha256 {later.sha[:16]}) as {earlier.label}"))
            continue
        PAIR_COUNTERS["candidates"].inc()
        yield (earlier.order, later.order), (earlier, later, distance)


def ask_for_views(candidate: tuple) -> Iterator[tuple[tuple, tuple]]:
    """A candidate pair asks each of its faces for its view: (face order, (pair id, role))."""
    pair_id, _ = candidate
    yield pair_id[0], (pair_id, 0)
    yield pair_id[1], (pair_id, 1)


def answer_with_view(joined: tuple[tuple, dict]) -> Iterator[tuple[tuple, tuple]]:
    """A face's view, to each candidate pair that asked for it: (pair id, (role, view))."""
    _, parts = joined
    asks = list(parts["ask"])
    if asks:
        view = next(iter(parts["view"]))
        for pair_id, role in asks:
            yield pair_id, (role, view)


def confirm_pair(joined: tuple[tuple, dict], cfg: DedupConfig) -> Iterator[Pair]:
    """A candidate pair with both views -> a near-copy `Pair` when the second check says the same photograph."""
    _, parts = joined
    (earlier, later, distance), = parts["candidate"]
    views = dict(parts["view"])
    copy, _, how = same_photo(fingerprint_of(views[0]), fingerprint_of(views[1]), cfg.check)
    if not copy:
        PAIR_COUNTERS["distinct"].inc()
        return
    PAIR_COUNTERS["confirmed"].inc()
    yield Pair(earlier, later, NEAR,
               f"a copy of {earlier.label}: source hashes {distance}/{cfg.hash_bits} bits apart, {how}")


def decide(pairs: Iterable[Pair]) -> dict[tuple, tuple[str, str, str]]:
    """Sample key -> (reason, detail, kept twin's face_id) for every face to reject. Greedy in the keep order:
    a face goes when one of its confirmed twins earlier in the order stays (the earliest such twin is named)."""
    earlier_twins: dict[tuple, list[Pair]] = defaultdict(list)
    for pair in pairs:
        earlier_twins[pair.later.order].append(pair)
    rejected: dict[tuple, tuple[str, str, str]] = {}
    for order in sorted(earlier_twins):
        kept = [p for p in earlier_twins[order] if p.earlier.key not in rejected]
        if kept:
            pair = min(kept, key=lambda p: (p.earlier.order, p.reason))
            rejected[pair.later.key] = (pair.reason, pair.detail, pair.earlier.face_id)
    return rejected


class DedupStage(Stage):
    """Applies the decisions: a face to reject becomes its reject (naming the kept twin), the rest pass on."""

    name = STAGE
    reasons = (EXACT, NEAR)

    def run(self, sample: Sample, rejected: dict[tuple, tuple[str, str, str]]) -> Iterator:
        verdict = rejected.get(sample_key(sample))
        if verdict is None:
            sample.fingerprint = None  # not needed downstream
            yield sample
            return
        reason, detail, kept = verdict
        reject = self.reject(sample, reason, detail)
        reject.duplicate_of = kept
        yield reject


class Deduplicate(beam.PTransform):
    """Samples -> a DoOutputsTuple: `ok` (one copy of each face) and REJECTS (the other copies)."""

    def __init__(self, cfg: DedupConfig, source_order: list[str]) -> None:
        super().__init__()
        self.cfg = cfg
        self.rank = {name: i for i, name in enumerate(source_order)}

    def expand(self, samples):
        faces = samples | "Faces" >> beam.Map(record_of, self.rank)
        found = (faces
                 | "Refs" >> beam.Map(lambda face: face[0])
                 | "BandKeys" >> beam.FlatMap(candidate_keys, self.cfg)
                 | "Bands" >> beam.GroupByKey()
                 | "FindCandidates" >> beam.FlatMap(find_candidates, self.cfg).with_outputs(EXACT, main="near"))
        # Each face's view travels once; the few candidate pairs collect the two they need.
        views = faces | "Views" >> beam.Map(lambda face: (face[0][0], face[1]))
        asks = found.near | "Asks" >> beam.FlatMap(ask_for_views)
        answers = {"view": views, "ask": asks} | "JoinViews" >> beam.CoGroupByKey() | "Answer" >> beam.FlatMap(
            answer_with_view)
        confirmed = ({"candidate": found.near, "view": answers}
                     | "JoinPairs" >> beam.CoGroupByKey()
                     | "Confirm" >> beam.FlatMap(confirm_pair, self.cfg))
        # Confirmed copies are few (one pair per duplicate): one worker decides them all, in one order.
        rejected = ((found[EXACT], confirmed)
                    | "Pairs" >> beam.Flatten()
                    | "AllPairs" >> beam.combiners.ToList()
                    | "Decide" >> beam.FlatMap(lambda pairs: decide(pairs).items()))
        return samples | "Apply" >> beam.ParDo(DedupStage(), beam.pvalue.AsDict(rejected)).with_outputs(
            REJECTS, main="ok")
