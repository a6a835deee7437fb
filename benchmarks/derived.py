"""Derived test data from real photos: the inputs the face benchmarks (and the tests) feed the pipeline.

Each function takes an RGB uint8 image (and, where the face matters, its 478-point MediaPipe mesh in the
image's pixels) and returns a new RGB image:

- `tight_crop`: the face box scaled by `scale` (1.0: the face touches the frame on all sides);
- `shrink`: the whole image with its shorter side at `side` px;
- `fer_crop`: a FER2013-style 48x48 grey square crop of the face (returned as RGB);
- `altered_copy`: the photo resized to 90%, brightened by 8% and re-encoded as JPEG (quality 70): the
  file's bytes (`decode` turns bytes back into pixels);
- `expression_warp`: the same photo with a local change of expression: mouth corners pulled out and up
  (`smile`), lower lip and chin down (`jaw`) or brows up (`brow`), by `strength` x the inter-ocular
  distance; everything else (person, background, light, camera) unchanged: the hardest "same person,
  same setting, other expression" pair there is;
- `mirror`.

`write_corpus` writes a `csv` corpus (labels.csv + images/) that `fea build --source csv:...` reads; `located`
finds the faces of a csv corpus's photos. As a command it writes the FER-style 48 px copy of a csv corpus (the
reduced view `fea calibrate --views` pairs with the photos as taken; photos without a face are left out):

    python benchmarks/derived.py fer48 ../shared/corpora/faces-in-the-wild-sample build/wild48-corpus
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageEnhance

# Mesh indices moved by expression_warp (MediaPipe face mesh): mouth corners; lower lip and chin; brows.
MOUTH_CORNERS = ((61, -1.0), (291, 1.0))  # (index, outward x direction for a frontal face)
LOWER_LIP_AND_CHIN = (17, 14, 84, 314, 181, 405, 152)
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
IRIS_CENTRES = (468, 473)
WARP_KINDS = ("smile", "jaw", "brow")


def face_box(mesh: np.ndarray) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = mesh[:, :2].min(axis=0), mesh[:, :2].max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def tight_box(mesh: np.ndarray, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The face box scaled by `scale` about its centre, in whole pixels inside the image."""
    x0, y0, x1, y1 = face_box(mesh)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return max(0, round(cx - hw)), max(0, round(cy - hh)), min(width, round(cx + hw)), min(height, round(cy + hh))


def tight_crop(rgb: np.ndarray, mesh: np.ndarray, scale: float = 1.0) -> np.ndarray:
    left, top, right, bottom = tight_box(mesh, scale, rgb.shape[1], rgb.shape[0])
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def shrink(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = side / min(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                  Image.Resampling.LANCZOS))


def fer_crop(rgb: np.ndarray, mesh: np.ndarray, side: int = 48) -> np.ndarray:
    """A square grey face crop as FER2013 has them: the face fills the frame, a little forehead and chin."""
    x0, y0, x1, y1 = face_box(mesh)
    half = max(x1 - x0, y1 - y0) * 1.05 / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.03 * half
    box = tuple(round(v) for v in (cx - half, cy - half, cx + half, cy + half))
    grey = Image.fromarray(rgb).crop(box).convert("L").resize((side, side), Image.Resampling.LANCZOS)
    return np.asarray(grey.convert("RGB"))


def jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def altered_copy(rgb: np.ndarray, quality: int = 70, size: float = 0.9, brightness: float = 1.08) -> bytes:
    """Resized, brightened, then re-encoded: the file a second corpus holds of the first's photo."""
    image = Image.fromarray(rgb)
    image = image.resize((round(image.width * size), round(image.height * size)), Image.Resampling.LANCZOS)
    return jpeg(np.asarray(ImageEnhance.Brightness(image).enhance(brightness)), quality)


def mirror(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


def expression_warp(rgb: np.ndarray, mesh: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """Move facial features by `strength` x inter-ocular distance with a smooth local displacement field."""
    iod = float(np.linalg.norm(mesh[IRIS_CENTRES[0], :2] - mesh[IRIS_CENTRES[1], :2]))
    step = strength * iod
    if kind == "smile":
        moves = [(mesh[i, :2], (side * step, -step)) for i, side in MOUTH_CORNERS]
    elif kind == "jaw":
        moves = [(mesh[i, :2], (0.0, 1.2 * step)) for i in LOWER_LIP_AND_CHIN]
    elif kind == "brow":
        moves = [(mesh[i, :2], (0.0, -step)) for i in BROWS]
    else:
        raise ValueError(f"kind must be one of {WARP_KINDS}")
    h, w = rgb.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy, weight = (np.zeros((h, w), np.float32) for _ in range(3))
    sigma2 = 2 * (0.3 * iod) ** 2
    for (cx, cy), (ux, uy) in moves:
        k = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / sigma2)
        dx += k * ux
        dy += k * uy
        weight += k
    weight = np.maximum(weight, 1.0)  # full displacement at a control point, fading to none far from it
    return cv2.remap(rgb, xs - dx / weight, ys - dy / weight, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write_corpus(dst: Path, images: Iterable[tuple[str, np.ndarray | bytes, str]], quality: int = 95) -> Path:
    """A csv corpus: images/<name> and labels.csv (image, emotion). Pixels are saved as JPEG (PNG for .png
    names); bytes are written as they are."""
    (dst / "images").mkdir(parents=True, exist_ok=True)
    with open(dst / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "emotion"])
        for name, pixels, emotion in images:
            path = dst / "images" / name
            if isinstance(pixels, bytes):
                path.write_bytes(pixels)
            elif name.lower().endswith(".png"):
                Image.fromarray(pixels).save(path)
            else:
                Image.fromarray(pixels).save(path, quality=quality)
            writer.writerow([name, emotion])
    return dst


def located(corpus: Path) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(name, rgb, mesh, emotion) of every photo of a csv corpus (labels.csv: image, emotion; images/) where a
    face is found on the photo as given."""
    from pipeline.models.landmarker import FaceLandmarker

    landmarker = FaceLandmarker(max_faces=1)
    out = []
    for row in csv.DictReader(open(corpus / "labels.csv")):
        rgb = decode((corpus / "images" / row["image"]).read_bytes())
        faces = landmarker.detect(rgb)
        if faces:
            out.append((row["image"], rgb, faces[0].mesh, row["emotion"]))
    landmarker.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="write a derived copy of a csv corpus")
    parser.add_argument("kind", choices=["fer48"], help="fer48: each face cropped to a 48x48 grey square (PNG)")
    parser.add_argument("corpus", type=Path, help="csv corpus: labels.csv (image, emotion) and images/")
    parser.add_argument("out", type=Path, help="folder to write the derived corpus to (replaced)")
    args = parser.parse_args()
    photos = located(args.corpus)
    shutil.rmtree(args.out, ignore_errors=True)
    write_corpus(args.out, ((n.rsplit(".", 1)[0] + ".png", fer_crop(rgb, mesh), e) for n, rgb, mesh, e in photos))
    print(f"{args.out}: {len(photos)} faces")


if __name__ == "__main__":
    main()
