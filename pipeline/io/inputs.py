"""The build's inputs, handed from the driver to the workers as files.

The driver lists every input (it needs them for the accounting); the workers read them from
`<staging>/_inputs/inputs-NNNNN.pickle`, PER_FILE to a file. Putting the list into the pipeline
graph instead (`beam.Create(items)`) costs two bz2-compressed pickles of the whole list while the
graph is prepared, about 1 s per 5,000 inputs on one core before any worker starts, and a graph
that grows with the corpus. The files, not the items, are what the pipeline shuffles between
workers, so an item is never re-encoded on its way; small files keep the workers' shares even.
Files go through Beam's FileSystems, so a staging folder on a shared or cloud file system works
the same.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from pipeline.record import SourceItem

PER_FILE = 50


def write_input_files(items: Sequence[SourceItem], folder: Path, per_file: int = PER_FILE) -> list[str]:
    """Write `items` in files of `per_file`; return the files' paths in order."""
    paths = []
    for index, start in enumerate(range(0, len(items), per_file)):
        path = str(Path(folder) / f"inputs-{index:05d}.pickle")
        with FileSystems.create(path) as fh:
            fh.write(pickle.dumps(list(items[start:start + per_file]), protocol=pickle.HIGHEST_PROTOCOL))
        paths.append(path)
    return paths


def read_input_file(path: str) -> Iterator[SourceItem]:
    with FileSystems.open(path) as fh:
        yield from pickle.loads(fh.read())
