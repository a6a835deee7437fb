"""A folder of face photos with a CSV manifest: image path, emotion, optional subject and split columns.

Options (params.yaml `sources[].options`, or `--source csv:PATH,key=value`):
  manifest         CSV file name inside the folder (default labels.csv)
  image_dir        folder, relative to the corpus root, that image paths are relative to (default "")
  image_column     default "image";  emotion_column  default "emotion" (empty cell = unlabelled)
  subject_column   optional;  subject_pattern  optional regex on the file stem whose first group is
                   the subject (e.g. "^(.+)_\\d+$" for LFW-style names)
  split_column     optional official split;  label_map  optional {corpus label: canonical emotion}
  au_column        optional FACS coding of the face: '1+2+12', 'AU1,AU2', '1B+2C+12D' (intensity letters),
                   '0'/'none' = coded, no AU; empty = not coded (pipeline.sources.au_labels.parse_au_list)
  au_annotated     with au_column: the AUs the corpus codes ('1,2,4,6,12'); default every AU (full FACS)

Rows it cannot use are rejects (stage "read"): missing_path, path_outside_root, file_not_found,
unknown_label, invalid_split (a split that is not a `datasets` split name), duplicate_row (an image
listed again; keyed by its manifest line), unreadable_video, malformed_aus (an au_column cell that is
not an AU list). A manifest that is not UTF-8 CSV or lacks
a column is a SourceError.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.au_labels import annotated_option, parse_au_list
from pipeline.sources.base import VIDEO_SUFFIXES, Source, SourceError, valid_split_name, video_frame_items
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
        self._root = root
        self._manifest = manifest
        self._image_root = root / self.options.get("image_dir", "")
        self._image_col = self.options.get("image_column", "image")
        self._emotion_col = self.options.get("emotion_column", "emotion")
        self._subject_col = self.options.get("subject_column")
        self._split_col = self.options.get("split_column")
        self._au_col = self.options.get("au_column")
        self._au_annotated = annotated_option(self.options)
        self._pattern = re.compile(self.options["subject_pattern"]) if self.options.get("subject_pattern") else None
        self._label_map = self.options.get("label_map")
        self._fps = float(self.options.get("video_fps", 1.0))
        self._max_frames = int(self.options.get("max_frames_per_video", 8))

        seen: dict[str, int] = {}  # source_item -> manifest line that listed it first
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            try:
                columns = set(reader.fieldnames or [])
                wanted = (self._image_col, self._emotion_col, self._subject_col, self._split_col, self._au_col)
                missing = [c for c in wanted if c and c not in columns]
                if missing:
                    raise SourceError(
                        f"source {self.name}: {manifest.name} lacks column(s) {', '.join(missing)}; "
                        f"it has {', '.join(sorted(columns)) or 'none'}"
                    )
                for line, row in enumerate(reader, start=2):
                    entries = list(self._row(row, line))
                    key = entries[0].source_item
                    if key in seen:
                        # A second input with the same key would break the accounting: the repeated row
                        # is its own reject, keyed by its manifest line.
                        yield self.reject(f"{manifest.name}:{line}", "duplicate_row",
                                          f"{key} is already listed on line {seen[key]}")
                        continue
                    seen[key] = line
                    yield from entries
            except (UnicodeDecodeError, csv.Error) as exc:
                # A manifest that is not UTF-8 CSV is unusable as a whole: a usage error, not a crash.
                where = f" (line {reader.line_num})" if isinstance(exc, csv.Error) else ""
                raise SourceError(f"source {self.name}: {manifest.name} is not readable UTF-8 CSV{where}: "
                                  f"{type(exc).__name__}: {exc}") from None

    def _row(self, row: dict[str, str], line: int) -> Iterator[SourceItem | Reject]:
        """One manifest row -> a SourceItem (one per sampled frame for a video) or one Reject."""
        root = self._root
        rel = (row.get(self._image_col) or "").strip()
        if not rel:
            yield self.reject(f"{self._manifest.name}:{line}", "missing_path", "empty image cell")
            return
        path = self._image_root / rel
        if not self.inside_root(root, path):
            yield self.reject(rel, "path_outside_root", f"{rel} resolves outside {root}")
            return
        item_name = path.relative_to(root).as_posix()
        try:
            is_file = path.is_file()
        except OSError as exc:  # e.g. a name longer than the file system allows
            yield self.reject(item_name, "file_not_found", f"{type(exc).__name__}: {exc}")
            return
        if not is_file:
            yield self.reject(item_name, "file_not_found", str(path))
            return
        raw = (row.get(self._emotion_col) or "").strip()
        emotion = canonical_emotion(raw, self._label_map) if raw else None
        if raw and emotion is None:
            yield self.reject(item_name, "unknown_label", f"emotion label {raw!r}")
            return
        subject = (row.get(self._subject_col) or "").strip() if self._subject_col else None
        if not subject and self._pattern:
            match = self._pattern.match(path.stem)
            subject = match.group(1) if match else None
        split = ((row.get(self._split_col) or "").strip() or None) if self._split_col else None
        if split is not None and not valid_split_name(split):
            # Checked before a video is opened (checked_items would otherwise reject each of its frames).
            yield self.reject(item_name, "invalid_split", f"split {split!r} is not a valid split name")
            return
        try:
            au_labels = parse_au_list(row.get(self._au_col) or "") if self._au_col else None
        except ValueError as exc:
            yield self.reject(item_name, "malformed_aus", f"{self._au_col}: {exc}")
            return
        labels = dict(emotion=emotion, emotion_raw=raw or None, subject_id=subject or None, split=split,
                      au_labels=au_labels, au_annotated=self._au_annotated if au_labels is not None else None)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            yield from video_frame_items(self, root, path, self._fps, self._max_frames, **labels)
        else:
            yield SourceItem(self.name, item_name, str(path), **labels)
