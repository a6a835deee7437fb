"""RAF-DB (Real-world Affective Faces Database), basic-expression subset, in its official release layout.

Layout (RAF-DB README shipped with the release; Li, Deng & Du, "Reliable Crowdsourcing and Deep
Locality-Preserving Learning for Expression Recognition in the Wild", CVPR 2017):

    basic/EmoLabel/list_patition_label.txt   "train_00001.jpg 5" per line; 1..7 = surprise, fear, disgust,
                                              happiness, sadness, anger, neutral
    basic/Image/original/train_00001.jpg     the full photo
    basic/Image/aligned/train_00001_aligned.jpg   the 100x100 aligned face

The official train/test split is the file-name prefix. RAF-DB names no subjects.
Options: aligned (default false: read original/, since the pipeline detects and aligns itself).
The path may be the release root (holding basic/) or basic/ itself.

Also home of the helpers every corpus adapter shares: the label maps of corpus_labels.json.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.base import Source, SourceError, corpus_root, official_split
from pipeline.sources.labels import corpus_label_map


class RafDbSource(Source):
    kind = "rafdb"
    summary = "RAF-DB basic: EmoLabel/list_patition_label.txt + Image/original (or aligned), official train/test"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        base = root / "basic" if (root / "basic" / "EmoLabel").is_dir() else root
        label_file = base / "EmoLabel" / "list_patition_label.txt"
        if not label_file.is_file():
            raise SourceError(f"source {self.name}: {label_file} not found (expected the RAF-DB basic layout)")
        aligned = bool(self.options.get("aligned", False))
        image_dir = base / "Image" / ("aligned" if aligned else "original")
        labels = corpus_label_map("rafdb")
        for number, line in enumerate(label_file.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                yield self.reject(f"{label_file.name}:{number}", "malformed_line", line[:200])
                continue
            name, code = parts
            path = image_dir / (f"{Path(name).stem}_aligned{Path(name).suffix}" if aligned else name)
            rel = path.relative_to(root).as_posix()
            if not self.inside_root(root, path):
                yield self.reject(name, "path_outside_root", f"{name} resolves outside {root}")
            elif code not in labels:
                yield self.reject(rel, "unknown_label", f"RAF-DB label {code!r} (expected 1..7)")
            elif not path.is_file():
                yield self.reject(rel, "file_not_found", str(path))
            else:
                yield SourceItem(self.name, rel, str(path), emotion=labels[code], emotion_raw=code,
                                 split=official_split(name))
