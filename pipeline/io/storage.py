"""Where a build reads and writes: a local path or an object-storage URL (`s3://`, `gs://`, ...).

A location is a `pathlib.Path` for a local path and a `UPath` (universal_pathlib: the pathlib API over
fsspec) for a URL, so code that joins, lists, reads and writes paths works on both. Credentials and
endpoints come only from the standard environment of each store (`AWS_*`, including `AWS_ENDPOINT_URL`
for S3-compatible servers; `GOOGLE_APPLICATION_CREDENTIALS`): never from params, so they never reach the
manifest, the logs or the params hash.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# The project's extra that installs what a store needs (fsspec's filesystem and Beam's).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


class StorageError(ValueError):
    """A location this installation cannot reach (no filesystem installed for its scheme)."""


def scheme(location: str | os.PathLike) -> str | None:
    """`s3` for `s3://bucket/x`, `file` for `file:///x`; None for a plain local path."""
    match = _SCHEME.match(str(location))
    return None if match is None else match.group(1).lower()


def is_url(location: str | os.PathLike) -> bool:
    """Whether `location` names object storage (or any store but the local disk; `file://` is local)."""
    return scheme(location) not in (None, "file")


def local_path(location: str) -> str:
    """A `file://` URL as the plain path it names; anything else unchanged."""
    return location[len("file://"):] if scheme(location) == "file" else location


def _install_hint(name: str) -> str:
    extra = EXTRAS.get(name)
    return f"pip install 'fea-pipeline[{extra}]'" if extra else f"install an fsspec filesystem for {name}://"


def check_store(location: str, for_beam: bool = False) -> None:
    """Raise StorageError when `location` is a URL whose store has no filesystem installed: fsspec's (what
    the driver and the readers use) and, `for_beam`, Beam's (what Beam's Parquet sink writes through)."""
    if not is_url(location):
        return
    name = scheme(location)
    import fsspec

    try:
        fsspec.get_filesystem_class(name)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot use {location}: no filesystem for {name}:// is installed ({exc}); "
                           f"{_install_hint(name)}") from None
    if for_beam:
        from apache_beam.io.filesystems import FileSystems

        try:
            FileSystems.get_filesystem(location)
        except ValueError:
            raise StorageError(f"cannot write {location}: Beam has no filesystem for {name}:// installed; "
                               f"{_install_hint(name)}") from None


def location(path: str | os.PathLike) -> Path:
    """A local path as `Path`, a URL as `UPath` (a Path-like object on fsspec)."""
    if isinstance(path, Path):
        return path
    if is_url(path):
        check_store(str(path))
        from upath import UPath

        return UPath(str(path))
    return Path(local_path(str(path)))


def is_remote(path: Path) -> bool:
    """Whether `path` (from `location`) lives on object storage."""
    return not isinstance(path, Path)


# Objects fetched ahead of their reader (`prefetch`), by URL; each is handed out once by `read_bytes`.
_prefetched: dict[str, bytes] = {}


def prefetch(uris: list[str]) -> None:
    """Fetch these objects concurrently (one request each, in flight together) for the `read_bytes` calls that
    follow: a worker reading a shard's images one after the other would wait for each request in turn.
    Objects that cannot be fetched are left to `read_bytes`, which reports them."""
    _prefetched.clear()  # the previous shard's leftovers (a file rejected by its size is never read)
    if not uris:
        return
    fs = location(uris[0]).fs
    name = scheme(uris[0])
    fetched = fs.cat([u for u in uris if scheme(u) == name], on_error="omit")
    _prefetched.update({u if is_url(u) else f"{name}://{u}": data for u, data in fetched.items()})


def read_bytes(uri: str) -> bytes:
    """The bytes of a file named by a local path or a URL."""
    data = _prefetched.pop(uri, None)
    return data if data is not None else location(uri).read_bytes()


def size(uri: str) -> int:
    """The size in bytes of a file named by a local path or a URL; OSError (FileNotFoundError) if absent."""
    if not is_url(uri):
        return os.path.getsize(uri)
    if uri in _prefetched:
        return len(_prefetched[uri])
    return int(location(uri).stat().st_size)


def list_once(root: Path) -> None:
    """List everything under an object-storage folder in one go (a few LIST requests), so that the existence
    checks of each file that follow are answered from fsspec's listing cache instead of a request each."""
    if is_remote(root):
        root.fs.find(root.path)


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[str]:
    """A local path holding the file's bytes: the path itself when local, else a temporary copy (for readers
    that only open local files, such as OpenCV's video capture)."""
    if not is_url(uri):
        yield uri
        return
    suffix = Path(uri.rsplit("/", 1)[-1]).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(read_bytes(uri))
        tmp.flush()
        yield tmp.name


def remove_tree(path: Path) -> None:
    """Delete a folder or prefix and everything under it; nothing if it is absent."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    fs, root = path.fs, path.path
    if fs.exists(root):
        fs.rm(root, recursive=True)


def files_under(path: Path) -> list[str]:
    """Every file under a folder or prefix, as paths relative to it (sorted, `/`-separated)."""
    if not is_remote(path):
        if not path.is_dir():
            return []
        return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    fs, root = path.fs, path.path.rstrip("/")
    if not fs.exists(root):
        return []
    return sorted(found[len(root) + 1:] for found in fs.find(root))


def make_dirs(path: Path) -> None:
    """Create a local folder (and its parents); object stores have no folders to create."""
    if not is_remote(path):
        path.mkdir(parents=True, exist_ok=True)
