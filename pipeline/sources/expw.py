"""ExpW (Expression in-the-Wild): web photos, one label line per annotated face.

Layout (ExpW README; Zhang, Luo, Loy & Tang, "From Facial Expression Recognition to Interpersonal
Relation Prediction", IJCV 2018):

    label/label.lst   "image_name face_id_in_image face_box_top face_box_left face_box_right
                       face_box_bottom face_box_cofidence expression_label" per line;
                       0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral
    image/origin/<image_name>

One item per face line: source_item "image/origin/<name>#<face_id>", the face box (left, top,
right, bottom) and detector confidence in meta. A photo can show several labelled faces while the
pipeline's detector keeps one face per item, so by default (`crop: multi`) the faces of photos with
more than one annotated face are cropped to their box (enlarged by `crop_margin`, default 0.4 of
the box side) and carried inline as JPEG bytes; `crop: always` crops every face, `crop: never` none.
No subjects, no official split.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.base import Source, SourceError, corpus_root
from pipeline.sources.labels import corpus_label_map


def crop_face(path: Path, box: list[int], margin: float) -> bytes:
    """JPEG bytes of the (left, top, right, bottom) box enlarged by `margin` of its size, clipped to the photo."""
    left, top, right, bottom = box
    dx, dy = (right - left) * margin / 2, (bottom - top) * margin / 2
    with path.open("rb") as fh, Image.open(fh) as image:
        image = image.convert("RGB")
        area = (max(0, int(left - dx)), max(0, int(top - dy)),
                min(image.width, int(right + dx)), min(image.height, int(bottom + dy)))
        buffer = io.BytesIO()
        image.crop(area).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class ExpwSource(Source):
    kind = "expw"
    summary = "ExpW: label/label.lst (face boxes + labels) + image/origin; multi-face photos cropped per face"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        label_file = root / "label" / "label.lst"
        if not label_file.is_file():
            raise SourceError(f"source {self.name}: {label_file} not found (expected the ExpW layout)")
        crop = str(self.options.get("crop", "multi"))
        if crop not in ("multi", "always", "never"):
            raise SourceError(f"source {self.name}: crop must be multi, always or never, not {crop!r}")
        margin = float(self.options.get("crop_margin", 0.4))
        labels = corpus_label_map("expw")
        lines = [(n, line.split()) for n, line in enumerate(label_file.read_text().splitlines(), 1) if line.strip()]
        faces_per_image = Counter(parts[0] for _, parts in lines)
        for number, parts in lines:
            if len(parts) != 8:
                yield self.reject(f"label.lst:{number}", "malformed_line", " ".join(parts)[:200])
                continue
            name, face_id, top, left, right, bottom, confidence, code = parts
            path = root / "image" / "origin" / name
            item = f"image/origin/{name}#{face_id}"
            try:
                box = [int(float(v)) for v in (left, top, right, bottom)]
                meta = {"face_box": box, "face_confidence": float(confidence), "face_id": int(face_id)}
            except ValueError:
                yield self.reject(item, "malformed_line", " ".join(parts)[:200])
                continue
            if not self.inside_root(root, path):
                yield self.reject(item, "path_outside_root", f"{name} resolves outside {root}")
            elif code not in labels:
                yield self.reject(item, "unknown_label", f"ExpW expression {code!r} (expected 0..6)")
            elif not path.is_file():
                yield self.reject(item, "file_not_found", str(path))
            elif box[2] <= box[0] or box[3] <= box[1]:
                yield self.reject(item, "bad_face_box", f"left, top, right, bottom = {box}")
            else:
                data = None
                if crop == "always" or (crop == "multi" and faces_per_image[name] > 1):
                    try:
                        data = crop_face(path, box, margin)
                    except (OSError, ValueError, Image.DecompressionBombError) as exc:
                        yield self.reject(item, "unreadable_image", f"{type(exc).__name__}: {exc}")
                        continue
                    meta["cropped"] = True
                yield SourceItem(self.name, item, str(path), emotion=labels[code], emotion_raw=code,
                                 meta=meta, data=data)
