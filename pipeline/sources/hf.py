"""A Hugging Face `datasets` dataset with an image column and an emotion label column.

Reads what `datasets.load_from_disk` reads (a folder written by `save_to_disk`: a Dataset or a
DatasetDict) or else what `datasets.load_dataset(dataset, split=split)` reads (a local folder of
data files, or a Hub id when the machine is online) — see the `datasets` documentation
("Load", "Save and export"). Images stay encoded: each item carries the image's bytes (`data`).

Options:
  dataset        local path (relative to the source path) or Hub id; default: the source path
  split          default "train"; train / validation (valid, val, dev) / test become the official split
  image_column   default "image" (an Image feature, or a dict with bytes/path)
  label_column   default "label": int with ClassLabel names, int mapped by label_map, or str;
                 None / -1 / "" = unlabelled
  subject_column optional;  label_map  optional {label or class name: canonical emotion}
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.domain.record import Reject, SourceItem
from pipeline.io import storage
from pipeline.sources.base import Source, SourceError, official_split
from pipeline.sources.labels import canonical_emotion

# datasets' builder for each kind of data file, for a folder of data files on object storage.
DATA_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}


def _load(location: str, split: str) -> Any:
    import datasets

    path = storage.location(location) if storage.is_url(location) else Path(location)
    try:
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise SourceError(f"{location} has no split {split!r}; it has {', '.join(loaded)}")
                return loaded[split]
            return loaded
        if storage.is_remote(path):  # load_dataset takes a local folder or a Hub id: name the remote files
            files = [f"{location.rstrip('/')}/{f}" for f in storage.files_under(path)]
            builders = {DATA_FILE_BUILDERS.get(Path(f).suffix.lower()) for f in files} - {None}
            if len(builders) != 1:
                raise SourceError(f"{location}: expected data files of one kind ({', '.join(DATA_FILE_BUILDERS)})")
            return datasets.load_dataset(builders.pop(), data_files=files, split=split)
        return datasets.load_dataset(location, split=split)
    except SourceError:
        raise
    except Exception as exc:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError)
        raise SourceError(f"cannot load dataset {location!r} (split {split!r}): {exc}") from None


class HuggingFaceSource(Source):
    kind = "hf"
    summary = "Hugging Face datasets (save_to_disk folder, data files or Hub id): image + label columns"

    def items(self) -> Iterator[SourceItem | Reject]:
        import datasets

        location = self.options.get("dataset")
        if location is None and self.path is None:
            raise SourceError(f"source {self.name}: hf needs a path or the option dataset")
        if location is None:
            location = str(self.path)
        elif self.path is not None and (self.path / location).exists():
            location = str(self.path / location)
        split = str(self.options.get("split", "train"))
        image_col = self.options.get("image_column", "image")
        label_col = self.options.get("label_column", "label")
        subject_col = self.options.get("subject_column")
        label_map = self.options.get("label_map")
        try:
            ds = _load(location, split)
        except SourceError as exc:
            raise SourceError(f"source {self.name}: {exc}") from None
        missing = [c for c in (image_col, label_col, subject_col) if c and c not in ds.column_names]
        if missing:
            raise SourceError(f"source {self.name}: dataset lacks column(s) {', '.join(missing)}; "
                              f"it has {', '.join(ds.column_names)}")
        if isinstance(ds.features[image_col], datasets.Image):
            ds = ds.cast_column(image_col, datasets.Image(decode=False))
        feature = ds.features[label_col]
        names = feature.names if isinstance(feature, datasets.ClassLabel) else None
        for index, row in enumerate(ds):
            item = f"{split}#{index}"
            image = row[image_col]
            data = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, bytes) else None
            if not data and isinstance(image, dict) and image.get("path") and Path(image["path"]).is_file():
                data = Path(image["path"]).read_bytes()
            if not data:
                yield self.reject(item, "missing_image", f"no bytes in column {image_col!r}")
                continue
            label = row[label_col]
            raw = None if label is None or label == -1 or str(label).strip() == "" else str(label).strip()
            if raw is not None and names is not None and isinstance(label, int) and 0 <= label < len(names):
                raw = names[label]
            emotion = canonical_emotion(raw, label_map) if raw is not None else None
            if emotion is None and raw is not None and label_map:  # a map keyed by the integer itself
                emotion = canonical_emotion(str(label), label_map)
            if raw is not None and emotion is None:
                yield self.reject(item, "unknown_label", f"label {raw!r}")
                continue
            subject = str(row[subject_col]).strip() if subject_col and row[subject_col] is not None else None
            yield SourceItem(self.name, item, location, emotion=emotion, emotion_raw=raw, subject_id=subject or None,
                             split=official_split(split), data=data)
