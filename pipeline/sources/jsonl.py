"""A folder of face photos (or videos) with a JSON Lines manifest: one object per line.

    {"image": "images/a.jpg", "emotion": "happy", "subject": "s01", "split": "train"}

The generic format of many exported annotation tools (JSON Lines: https://jsonlines.org). Same
semantics and rejects as the CSV adapter (`csv`): labels are mapped to the canonical 8 (built-in
synonyms plus label_map), an empty or null emotion means unlabelled; a path outside the corpus
root, a missing file, an unknown label and a line that is not a JSON object are rejects.

Options: manifest (default manifest.jsonl), image_dir, image_key (default image), emotion_key
(default emotion), subject_key (default subject), split_key (default split), label_map,
video_fps, max_frames_per_video, au_key (optional FACS coding: "1+2+12", ["AU1", "AU12"] or
{"AU12": 4}; null/absent = not coded, see the csv adapter's au_column) with au_annotated.
A value under au_key that is not an AU list is a reject (malformed_aus).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.au_labels import annotated_option, parse_au_list
from pipeline.sources.base import VIDEO_SUFFIXES, Source, SourceError, corpus_root, video_frame_items
from pipeline.sources.labels import canonical_emotion


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _au_cell(value: object) -> str:
    """A JSON AU coding as the text form parse_au_list reads: lists joined with '+', objects as code:value."""
    if isinstance(value, list):
        return "+".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return "+".join(f"{k}:{v}" for k, v in value.items()) or "none"
    return _text(value)


class JsonlSource(Source):
    kind = "jsonl"
    summary = "folder of images (or videos) + JSON Lines manifest with image, emotion, subject, split keys"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        manifest = root / self.options.get("manifest", "manifest.jsonl")
        if not manifest.is_file():
            raise SourceError(f"source {self.name}: manifest {manifest} not found")
        image_root = root / self.options.get("image_dir", "")
        keys = {k: self.options.get(f"{k}_key", k) for k in ("image", "emotion", "subject", "split")}
        au_key = self.options.get("au_key")
        au_annotated = annotated_option(self.options)
        label_map = self.options.get("label_map")
        fps = float(self.options.get("video_fps", 1.0))
        max_frames = int(self.options.get("max_frames_per_video", 8))
        with manifest.open(encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{manifest.name}:{number}"
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield self.reject(where, "bad_json", str(exc))
                    continue
                if not isinstance(entry, dict):
                    yield self.reject(where, "bad_json", f"a JSON {type(entry).__name__}, not an object")
                    continue
                rel = _text(entry.get(keys["image"]))
                path = image_root / rel
                if not rel:
                    yield self.reject(where, "missing_path", f"no {keys['image']!r} value")
                    continue
                if not self.inside_root(root, path):
                    yield self.reject(rel, "path_outside_root", f"{rel} resolves outside {root}")
                    continue
                item = path.relative_to(root).as_posix()
                if not path.is_file():
                    yield self.reject(item, "file_not_found", str(path))
                    continue
                raw = _text(entry.get(keys["emotion"]))
                emotion = canonical_emotion(raw, label_map) if raw else None
                if raw and emotion is None:
                    yield self.reject(item, "unknown_label", f"emotion label {raw!r}")
                    continue
                try:
                    au_labels = parse_au_list(_au_cell(entry.get(au_key))) if au_key else None
                except ValueError as exc:
                    yield self.reject(item, "malformed_aus", f"{au_key}: {exc}")
                    continue
                labels = dict(emotion=emotion, emotion_raw=raw or None,
                              subject_id=_text(entry.get(keys["subject"])) or None,
                              split=_text(entry.get(keys["split"])) or None,
                              au_labels=au_labels, au_annotated=au_annotated if au_labels is not None else None)
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    yield from video_frame_items(self, root, path, fps, max_frames, **labels)
                else:
                    yield SourceItem(self.name, item, str(path), **labels)
