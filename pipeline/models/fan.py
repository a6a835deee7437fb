"""face-alignment's FAN (2DFAN-4): 68 iBUG landmarks per face, batched, in boxes we already have.

The package's `FaceAlignment` class also builds its own face detector (S3FD etc.), whose weights it
downloads at construction; we already have the Face Landmarker's face, so only the landmark network is
used, with the package's own pre/post-processing (`crop` around the box centre and scale,
`get_preds_fromhm`) as in `FaceAlignment.get_landmarks_from_image` (without test-time flipping).
Weights: the state dict `2DFAN4-11f355bf06.pth.tar`, resolved offline by `resolve_weights`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.models.files import ModelFile, ModelFileError, resolve_weights

MODEL_NAME = "fan_2d"


def load_fan(model_file: ModelFile, device):
    import torch
    from face_alignment.models import FAN

    net = FAN(4)
    try:
        state = torch.load(model_file.path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a wrong or corrupt file is one user-facing problem
        raise ModelFileError(f"{MODEL_NAME}: {model_file.path} is not a 2DFAN-4 state dict: {exc}") from exc
    return net.to(device).eval()


class FanLandmarks:
    """`predict(images, boxes)` -> (B, 68, 2) landmarks in image pixels and (B, 68) heatmap peak scores."""

    def __init__(self, weights: str | Path | None = None, device: str | None = None) -> None:
        import torch

        self.model_file = resolve_weights(MODEL_NAME, weights)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = load_fan(self.model_file, self.device)

    @property
    def version(self) -> str:
        return f"fan-2d@{self.model_file.sha256[:12]}"

    def predict(self, images: list[np.ndarray], boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images: RGB uint8 arrays (any sizes); boxes (B, 4) x0, y0, x1, y1 in each image's pixels."""
        import torch
        from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE, crop, get_preds_fromhm

        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.shape != (len(images), 4):
            raise ValueError(f"boxes must be ({len(images)}, 4), got {boxes.shape}")
        centers = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
        centers[:, 1] -= (boxes[:, 3] - boxes[:, 1]) * CENTER_Y_OFFSET
        scales = (boxes[:, 2] - boxes[:, 0] + boxes[:, 3] - boxes[:, 1]) / REFERENCE_SCALE
        crops = np.stack([crop(img, c, s).transpose(2, 0, 1) for img, c, s in zip(images, centers, scales,
                                                                                  strict=True)])
        with torch.inference_mode():
            out = self.net(torch.from_numpy(crops).to(self.device, torch.float32).div_(255.0))
            if isinstance(out, list):
                out = out[-1]
            heatmaps = out.float().cpu().numpy()
        points, scores = [], []
        for i in range(len(images)):
            _, pts_img, score = get_preds_fromhm(heatmaps[i:i + 1], centers[i], scales[i])
            points.append(np.asarray(pts_img, dtype=np.float32).reshape(68, 2))
            scores.append(np.asarray(score, dtype=np.float32).reshape(68))
        return np.stack(points), np.stack(scores)
