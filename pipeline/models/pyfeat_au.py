"""py-feat's `xgb` AU detector (py-feat 2.x Detectorv1 default), run on our aligned faces.

py-feat computes, per face, HOG features of the face re-aligned and masked from its 68 landmarks
(`feat.utils.face_mask.extract_hog_features_batched`, torch, batched, on `device`), projects them
with three scaler+PCA pairs (upper / lower / full face), appends the 68 landmarks and runs one
XGBoost classifier per AU: 20 AU occurrence probabilities in [0, 1]. We feed it the pipeline's
aligned crop (resized to py-feat's 112 px face size) and the 68 landmarks in that crop, so it sees
the same kind of input as inside py-feat.

The weights (one skops file) come from the Hugging Face repo py-feat/xgb_au, resolved offline by
`resolve_weights`; the skops file is loaded trusting only the types listed in the packaged models.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.models.files import ModelFile, ModelFileError, registry_entry, resolve_weights

FACE_SIZE = 112  # py-feat's face crop size for the mobilefacenet landmark / HOG path
MODEL_NAME = "pyfeat_xgb_au"


def pyfeat_version() -> str:
    from importlib.metadata import version

    return version("py-feat")


def load_xgb_au(model_file: ModelFile):
    """The py-feat XGBClassifier held in the skops file, refusing any type outside the allow-list."""
    from skops.io import get_untrusted_types, load

    allowed = set(registry_entry(MODEL_NAME)["trusted_types"])
    try:
        unknown = get_untrusted_types(file=model_file.path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise ModelFileError(f"{MODEL_NAME}: {model_file.path} is not a readable skops file: {exc}") from exc
    refused = sorted(set(unknown) - allowed)
    if refused:
        raise ModelFileError(f"{MODEL_NAME}: {model_file.path} holds types outside the allow-list "
                             f"(models.json trusted_types): {', '.join(refused)}")
    import feat.au_detectors.StatLearning.SL_test as sl

    loaded = load(model_file.path, trusted=list(unknown))
    detector = sl.XGBClassifier()  # re-wrapped like py-feat's Detector does, so the weights' version does not matter
    detector.load_weights(
        scaler_upper=loaded.scaler_upper, pca_model_upper=loaded.pca_model_upper,
        scaler_lower=loaded.scaler_lower, pca_model_lower=loaded.pca_model_lower,
        scaler_full=loaded.scaler_full, pca_model_full=loaded.pca_model_full,
        classifiers=loaded.classifiers, calibrators=getattr(loaded, "calibrators", None),
    )
    missing = [k for k in detector.au_keys if k not in detector.classifiers]
    if missing:
        raise ModelFileError(f"{MODEL_NAME}: {model_file.path} has no classifier for {', '.join(missing)}")
    return detector


class PyFeatAU:
    """`predict(crops, landmarks68)` -> (B, 20) AU probabilities in py-feat's order (`au_keys`)."""

    def __init__(self, weights_dir: str | Path | None = None, device: str | None = None) -> None:
        import torch
        from feat.utils.image_operations import HOGLayer

        self.model_file = resolve_weights(MODEL_NAME, weights_dir)
        self.detector = load_xgb_au(self.model_file)
        self.au_keys: list[str] = list(self.detector.au_keys)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # py-feat's own HOG settings (Detectorv1): 8 orientations, 8 px cells, 2x2 blocks, L2-Hys.
        self.hog = HOGLayer(orientations=8, pixels_per_cell=8, cells_per_block=2, block_normalization="L2-Hys",
                            feature_vector=True, device=self.device).to(self.device)

    @property
    def version(self) -> str:
        return f"pyfeat-xgb@{pyfeat_version()}+{self.model_file.sha256[:12]}"

    def predict(self, crops: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        """crops (B, S, S, 3) uint8 RGB; landmarks68 (B, 68, 2) in crop pixels."""
        import cv2
        import torch
        from feat.utils.face_mask import extract_hog_features_batched

        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.shape[3] != 3:
            raise ValueError(f"crops must be (B, S, S, 3), got {crops.shape}")
        points = np.asarray(landmarks68, dtype=np.float32)
        if points.shape != (len(crops), 68, 2):
            raise ValueError(f"landmarks68 must be ({len(crops)}, 68, 2), got {points.shape}")
        size = crops.shape[1]
        resized = np.stack([cv2.resize(c, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        faces = torch.from_numpy(resized).permute(0, 3, 1, 2).float().div_(255.0).to(self.device)
        # py-feat's landmark contract: (B, 136) interleaved x, y normalised to the face crop.
        normalised = torch.from_numpy((points / size).reshape(len(crops), 136)).to(self.device)
        hog, aligned_landmarks = extract_hog_features_batched(faces, normalised, hog_layer=self.hog)
        probs = self.detector.detect_au(frame=hog, landmarks=[aligned_landmarks])
        return np.asarray(probs, dtype=np.float32).reshape(len(crops), len(self.au_keys))
