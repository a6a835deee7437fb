"""A folder of face photos with a CSV manifest: image path, emotion, optional subject and split columns.

Options (params.yaml `sources[].options`, or `--source csv:PATH,key=value`):
  manifest         CSV file name inside the folder (default labels.csv)
  image_dir        folder, relative to the corpus root, that image paths are relative to (default "")
  image_column     default "image";  emotion_column  default "emotion" (empty cell = unlabelled)
  subject_column   optional;  subject_pattern  optional regex on the file stem whose first group is
                   the subject (e.g. "^(.+)_\\d+$" for LFW-style names)
  split_column     optional official split;  label_map  optional {corpus label: canonical emotion}
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

from pipeline.record import Reject, SourceItem
from pipeline.sources.base import VIDEO_SUFFIXES, Source, SourceError, video_frame_items
from pipeline.sources.labels import canonical_emotion


class CsvSource(Source):
    kind = "csv"
    summary = "folder of images (or videos) + CSV manifest with image, emotion, subject, split columns"

    def items(self) -> Iterator[SourceItem | Reject]:
        if self.path is None:
            raise SourceError(f"source {self.name}: csv needs a path")
        root = self.path
        manifest = root / self.options.get("manifest", "labels.csv")
        if not manifest.is_file():
            raise SourceError(f"source {self.name}: manifest {manifest} not found")
        image_root = root / self.options.get("image_dir", "")
        image_col = self.options.get("image_column", "image")
        emotion_col = self.options.get("emotion_column", "emotion")
        subject_col = self.options.get("subject_column")
        split_col = self.options.get("split_column")
        pattern = re.compile(self.options["subject_pattern"]) if self.options.get("subject_pattern") else None
        label_map = self.options.get("label_map")
        fps = float(self.options.get("video_fps", 1.0))
        max_frames = int(self.options.get("max_frames_per_video", 8))

        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or [])
            missing = [c for c in (image_col, emotion_col, subject_col, split_col) if c and c not in columns]
            if missing:
                raise SourceError(
                    f"source {self.name}: {manifest.name} lacks column(s) {', '.join(missing)}; "
                    f"it has {', '.join(sorted(columns)) or 'none'}"
                )
            for line, row in enumerate(reader, start=2):
                rel = (row.get(image_col) or "").strip()
                if not rel:
                    yield self.reject(f"{manifest.name}:{line}", "missing_path", "empty image cell")
                    continue
                path = image_root / rel
                item_name = path.relative_to(root).as_posix() if self.inside_root(root, path) else rel
                if not self.inside_root(root, path):
                    yield self.reject(rel, "path_outside_root", f"{rel} resolves outside {root}")
                    continue
                if not path.is_file():
                    yield self.reject(item_name, "file_not_found", str(path))
                    continue
                raw = (row.get(emotion_col) or "").strip()
                emotion = canonical_emotion(raw, label_map) if raw else None
                if raw and emotion is None:
                    yield self.reject(item_name, "unknown_label", f"emotion label {raw!r}")
                    continue
                subject = (row.get(subject_col) or "").strip() if subject_col else None
                if not subject and pattern:
                    match = pattern.match(path.stem)
                    subject = match.group(1) if match else None
                labels = dict(
                    emotion=emotion,
                    emotion_raw=raw or None,
                    subject_id=subject or None,
                    split=(row.get(split_col) or "").strip() or None if split_col else None,
                )
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    yield from video_frame_items(self, root, path, fps, max_frames, **labels)
                else:
                    yield SourceItem(self.name, item_name, str(path), **labels)
