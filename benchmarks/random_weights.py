"""Weight files with random parameters, in the exact file names and formats the backends load.

For tests and throughput benchmarks on machines without the real weights (no network): the outputs
of models built from these files are meaningless, only their shape, provenance and speed are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HOG_FEATURES = 5408  # py-feat's HOG of a 112 px face: 13 x 13 blocks x 2 x 2 cells x 8 orientations
LANDMARK_FEATURES = 136


def write_pyfeat_xgb_au(folder: Path, seed: int = 0, components: int = 4) -> Path:
    """xgb_au_classifier_v2.skops: py-feat's XGBClassifier with fitted scalers/PCAs and tiny per-AU boosters."""
    import xgboost as xgb
    from feat.au_detectors.StatLearning.SL_test import XGBClassifier
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from skops.io import dump

    rng = np.random.default_rng(seed)
    hog = rng.normal(size=(3 * components + 8, HOG_FEATURES))

    def projection() -> tuple[StandardScaler, PCA]:
        scaler = StandardScaler().fit(hog)
        return scaler, PCA(components, random_state=seed).fit(scaler.transform(hog))

    model = XGBClassifier()
    (su, pu), (sl, pl), (sf, pf) = projection(), projection(), projection()
    features = rng.normal(size=(64, components + LANDMARK_FEATURES))
    classifiers = {}
    for key in model.au_keys:
        labels = (features[:, rng.integers(features.shape[1])] > 0).astype(int)
        classifiers[key] = xgb.XGBClassifier(n_estimators=4, max_depth=2, random_state=seed).fit(features, labels)
    model.load_weights(su, pu, sl, pl, sf, pf, classifiers)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "xgb_au_classifier_v2.skops"
    dump(model, path)
    return path


def write_fan_2d(folder: Path, seed: int = 0) -> Path:
    """2DFAN4-11f355bf06.pth.tar: a randomly initialised face_alignment FAN(4) state dict."""
    import torch
    from face_alignment.models import FAN

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "2DFAN4-11f355bf06.pth.tar"
    torch.save(FAN(4).state_dict(), path)
    return path
