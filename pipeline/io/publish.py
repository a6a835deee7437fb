"""Publishing a finished build: from its staging location to the release location, never half-visible.

A build is written to `<out>.partial` (a sibling folder, or a sibling prefix on object storage) and
published only once its manifest adds up and it passed validation:

* local: the staging folder is renamed over the release (one rename);
* object storage (no rename): the old release's manifest goes first, so a reader finds no release rather
  than a mix of two; then its other files; then the staged files are copied (server-side) and the
  manifest is copied last. The manifest is the commit marker: a reader (`BuildDir`) opens a release
  through it and takes the files it names, so a release without one is not (yet) there.

The staging folder's `_work/` (the resumable shards) is not published; the staging folder is then removed.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.io.build_dir import BuildDir
from pipeline.io.storage import files_under, remove_tree


def staging_for(target: Path) -> Path:
    """Where a build of `target` is written until it is published: `<target>.partial`."""
    return target.with_name(target.name + ".partial")


def publish(staging: BuildDir, target: BuildDir) -> None:
    remove_tree(staging.work_dir)
    if not staging.remote:
        remove_tree(target.root)
        staging.root.rename(target.root)
        return
    fs = target.root.fs
    src, dst = staging.root.path.rstrip("/"), target.root.path.rstrip("/")
    if fs.exists(f"{dst}/{BuildDir.MANIFEST}"):
        fs.rm(f"{dst}/{BuildDir.MANIFEST}")
    remove_tree(target.root)
    files = [f for f in files_under(staging.root) if f != BuildDir.MANIFEST]
    if files:
        fs.copy([f"{src}/{f}" for f in files], [f"{dst}/{f}" for f in files])
    fs.copy(f"{src}/{BuildDir.MANIFEST}", f"{dst}/{BuildDir.MANIFEST}")
    remove_tree(staging.root)


def clear_for_rerun(staging: BuildDir, keep_work: bool) -> None:
    """Empty a staging folder left by an earlier run, keeping its finished shards (`_work/`) when resuming."""
    if not keep_work:
        remove_tree(staging.root)
        return
    if not staging.remote:
        if staging.root.is_dir():
            for child in staging.root.iterdir():
                if child.name != staging.work_dir.name:
                    remove_tree(child) if child.is_dir() else child.unlink()
        return
    fs, root = staging.root.fs, staging.root.path.rstrip("/")
    stale = [f"{root}/{f}" for f in files_under(staging.root) if not f.startswith(staging.work_dir.name + "/")]
    if stale:
        fs.rm(stale)
