"""The Face Landmarker in torch: BlazeFace detection, the 478-point mesh and the blendshapes, many images per call.

The same models as MediaPipe's Face Landmarker (read offline from `face_landmarker.task`, graphs replayed by
`tflite_torch`), with MediaPipe's own pre- and post-processing of each step (CPU calculators of the face
landmarker graph, IMAGE mode):

1. detector: the image letterboxed into a 128 x 128 square (zero border, values in [-1, 1]); 896 SSD anchors;
   boxes and 6 key points decoded; scores sigmoid; weighted non-maximum suppression (IoU 0.3); at most
   `max_faces`, best first; the boxes taken back to image coordinates.
2. face region: the box, rotated so that the eyes (key points 0, 1) are level, squared on its long side and
   enlarged 1.5 times.
3. mesh: the region warped into 256 x 256 (OpenCV's fixed-point bilinear warp, `region_warp`; values in [0, 1]); the
   network gives 478 points and a presence logit; faces whose presence is below `min_presence_confidence` are
   dropped; points projected back through the region.
4. blendshapes from the mesh (`blendshapes_torch`), head pose from the mesh (`face_geometry`).

Every image of a call goes through the detector together, every face through the mesh network together, on
`cuda` when there is one. Results are `DetectedFace`s in source pixels, as `FaceLandmarker.detect` gives them.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.models.blendshapes_torch import TorchBlendshapes, default_device
from pipeline.models.face_geometry import FaceGeometry
from pipeline.models.files import ModelFile, ModelFileError, resolve_model
from pipeline.models.landmarker import DetectedFace, euler_from_matrix
from pipeline.models.region_warp import Region, warp_regions
from pipeline.models.tflite_torch import TFLiteGraph

DETECTOR_MEMBER = "face_detector.tflite"
MESH_MEMBER = "face_landmarks_detector.tflite"

# face_detection_short_range: SsdAnchorsCalculator and TensorsToDetectionsCalculator options.
DETECTOR_SIZE = 128
ANCHOR_STRIDES = (8, 16, 16, 16)
ANCHOR_OFFSET = 0.5
NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0
NMS_IOU = 0.3
# Face landmarker: the detection -> region steps (DetectionsToRects, RectTransformation).
RIGHT_EYE, LEFT_EYE = 0, 1
REGION_SCALE = 1.5
MESH_SIZE = 256
NUM_MESH_POINTS = 478


@dataclass
class Detection:
    """One face found by the detector, in normalised image coordinates."""

    score: float
    box: np.ndarray  # xmin, ymin, xmax, ymax
    keypoints: np.ndarray  # (6, 2)


def anchors() -> np.ndarray:
    """(896, 2) anchor centres of BlazeFace short range in [0, 1] (fixed anchor size 1: only centres matter)."""
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(ANCHOR_STRIDES):
        stride = ANCHOR_STRIDES[layer]
        same = sum(1 for s in ANCHOR_STRIDES[layer:] if s == stride)  # layers of one stride share a grid
        side = math.ceil(DETECTOR_SIZE / stride)
        per_cell = 2 * same  # aspect ratio 1.0 plus the interpolated scale, for each layer
        for y in range(side):
            for x in range(side):
                centres.extend([((x + ANCHOR_OFFSET) / side, (y + ANCHOR_OFFSET) / side)] * per_cell)
        layer += same
    return np.asarray(centres, dtype=np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, limit: int) -> list[Detection]:
    """MediaPipe's WEIGHTED non-maximum suppression: each kept face is the score-weighted mean of the boxes and
    key points that overlap it by more than NMS_IOU, with the best score of them."""
    order = list(np.argsort(-scores, kind="stable"))
    kept: list[Detection] = []
    while order and len(kept) < limit:
        best = order[0]
        overlap = _iou(boxes[best], boxes[order])
        group = [order[i] for i in range(len(order)) if overlap[i] > NMS_IOU]
        order = [order[i] for i in range(len(order)) if overlap[i] <= NMS_IOU]
        if best not in group:  # a degenerate box overlaps nothing, not even itself
            group.append(best)
            order = [i for i in order if i != best]
        w = scores[group][:, None]
        total = float(w.sum())
        kept.append(Detection(float(scores[best]), (boxes[group] * w).sum(axis=0) / total,
                              (keypoints[group] * w[:, :, None]).sum(axis=0) / total))
    return kept


def face_region(detection: Detection, width: int, height: int) -> Region:
    """The mesh network's region for a detection (DetectionsToRects + RectTransformation of the graph)."""
    x0, y0, x1, y1 = detection.box
    (ax, ay), (bx, by) = detection.keypoints[RIGHT_EYE], detection.keypoints[LEFT_EYE]
    rotation = -math.atan2(-(by - ay) * height, (bx - ax) * width)
    rotation = rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    side = max((x1 - x0) * width, (y1 - y0) * height) * REGION_SCALE
    return Region((x0 + x1) / 2 * width, (y0 + y1) / 2 * height, side, side, rotation)


class TorchFaceLandmarker:
    """Loads the three networks once; `detect_batch(images)` returns every image's faces (as `FaceLandmarker`)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_faces: int = 4,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
        device: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.model: ModelFile = resolve_model("face_landmarker", model_path)
        self.max_faces = max_faces
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self.device = torch.device(device or default_device())
        self.batch_size = batch_size or (16 if self.device.type == "cpu" else 256)
        try:
            with zipfile.ZipFile(self.model.path) as bundle:
                detector, mesh = bundle.read(DETECTOR_MEMBER), bundle.read(MESH_MEMBER)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelFileError(f"{self.model.name}: {self.model.path} is not a Face Landmarker bundle "
                                 f"holding {DETECTOR_MEMBER} and {MESH_MEMBER}: {exc}") from exc
        self.detector = TFLiteGraph(detector, DETECTOR_MEMBER).to(self.device).eval()
        self.mesh = TFLiteGraph(mesh, MESH_MEMBER).to(self.device).eval()
        self.blendshapes = TorchBlendshapes(device=str(self.device), model_path=self.model.path)
        self.geometry = FaceGeometry.from_bundle(self.model.path)
        self.anchors = torch.from_numpy(anchors()).to(self.device)
        if self.anchors.shape[0] != self.detector.shapes[self.detector.outputs[0]][1]:
            raise ModelFileError(f"{DETECTOR_MEMBER}: {self.detector.shapes[self.detector.outputs[0]][1]} boxes, "
                                 f"but the short-range anchors are {self.anchors.shape[0]}")

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        return self.detect_batch([rgb])[0]

    @torch.inference_mode()
    def detect_batch(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        found: list[list[DetectedFace]] = []
        for start in range(0, len(images), self.batch_size):
            found.extend(self._detect_chunk(images[start:start + self.batch_size]))
        return found

    def _detect_chunk(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        # Decoded images may be read-only views: torch wants memory it may write, so those are copied.
        tensors = [torch.from_numpy(rgb if rgb.flags.writeable and rgb.flags.c_contiguous else rgb.copy())
                   .to(self.device) for rgb in images]
        sizes = [(int(rgb.shape[1]), int(rgb.shape[0])) for rgb in images]
        detections = self._detections(tensors, sizes)
        owners = [i for i, faces in enumerate(detections) for _ in faces]
        regions = [face_region(d, *sizes[i]) for i, faces in enumerate(detections) for d in faces]
        results: list[list[DetectedFace]] = [[] for _ in images]
        if not regions:
            return results
        crops = self._warp(tensors, owners, regions, MESH_SIZE, zero_border=False) * np.float32(1 / 255)
        raw, presence_logit = self.mesh(crops)[:2]
        presence = torch.sigmoid(presence_logit.reshape(-1)).cpu().numpy()
        keep = [k for k in range(len(regions)) if presence[k] >= self.min_presence_confidence]
        if not keep:
            return results
        points = raw.reshape(len(regions), NUM_MESH_POINTS, 3)[keep].double().cpu().numpy() / MESH_SIZE
        pixel_meshes = np.stack([self._project(p, regions[k]) for p, k in zip(points, keep, strict=True)]
                                ).astype(np.float32)
        scores = self.blendshapes.predict(pixel_meshes)
        for k, mesh, score in zip(keep, pixel_meshes, scores, strict=True):
            width, height = sizes[owners[k]]
            normalised = mesh / np.array([width, height, width], np.float32)
            pose = euler_from_matrix(self.geometry.transform(normalised, width, height))
            results[owners[k]].append(DetectedFace(mesh, score.astype(np.float32), pose))
        return results

    def _detections(self, tensors: list[torch.Tensor], sizes: list[tuple[int, int]]) -> list[list[Detection]]:
        """Each image letterboxed into the detector's square, all at once; decoded and suppressed per image."""
        squares = [Region(w / 2, h / 2, max(w, h), max(w, h), 0.0) for w, h in sizes]
        letterboxed = self._warp(tensors, list(range(len(tensors))), squares, DETECTOR_SIZE, zero_border=True)
        raw_boxes, raw_scores = self.detector(letterboxed * np.float32(2 / 255) - 1.0)  # [0, 255] -> [-1, 1]
        scores = torch.sigmoid(raw_scores[..., 0].clamp(-SCORE_CLIP, SCORE_CLIP))
        coords = raw_boxes / DETECTOR_SIZE  # fixed anchor size 1: offsets in units of the input side
        centres = coords[..., :2] + self.anchors
        half = coords[..., 2:4] / 2
        boxes = torch.cat([centres - half, centres + half], dim=-1)
        keypoints = coords[..., 4:4 + 2 * NUM_KEYPOINTS].reshape(*coords.shape[:2], NUM_KEYPOINTS, 2)
        keypoints = keypoints + self.anchors[:, None, :]
        scores, boxes, keypoints = scores.cpu().numpy(), boxes.cpu().numpy(), keypoints.cpu().numpy()
        out = []
        for i, (width, height) in enumerate(sizes):
            chosen = scores[i] >= self.min_detection_confidence
            found = weighted_nms(scores[i][chosen], boxes[i][chosen], keypoints[i][chosen], self.max_faces)
            side = max(width, height)
            scale = np.array([side / width, side / height], np.float32)  # square -> image, normalised
            offset = np.array([(width - side) / 2 / width, (height - side) / 2 / height], np.float32)
            for d in found:
                d.box = d.box * np.tile(scale, 2) + np.tile(offset, 2)
                d.keypoints = d.keypoints * scale + offset
            out.append(found)
        return out

    def _warp(self, tensors: list[torch.Tensor], owners: list[int], regions: list[Region], out: int,
              zero_border: bool) -> torch.Tensor:
        """(N, out, out, 3) uint8 values (as float) of each region of its owner image, as MediaPipe's warp."""
        result = torch.empty(len(regions), out, out, 3, device=self.device)
        for i in sorted(set(owners)):
            rows = [k for k, owner in enumerate(owners) if owner == i]
            result[rows] = warp_regions(tensors[i], [regions[k] for k in rows], out, zero_border)
        return result

    @staticmethod
    def _project(points: np.ndarray, region: Region) -> np.ndarray:
        """Mesh points in the region's [0, 1] square -> source pixels (z scaled like x, as MediaPipe)."""
        x, y = points[:, 0] - 0.5, points[:, 1] - 0.5
        cos, sin = math.cos(region.rotation), math.sin(region.rotation)
        px = (cos * x - sin * y) * region.width + region.cx
        py = (sin * x + cos * y) * region.height + region.cy
        pz = points[:, 2] * region.width
        return np.stack([px, py, pz], axis=1)
