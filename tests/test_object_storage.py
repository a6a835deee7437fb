"""Corpora and releases on object storage, against a real S3 API (moto's server, started by the session):
publishing with the manifest as commit marker, readers through `BuildDir`, source adapters and the decode
stage reading `s3://` corpora, and (slow) the shared sample corpus built from S3 to S3, killed and resumed."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import WILD_SAMPLE, require_shared
from PIL import Image
from s3_server import S3Server
from test_adapters import affectnet_csv, affectnet_folders, expw, face, fer2013, jsonl_corpus, rafdb  # noqa: F401

from pipeline.config import DecodeConfig
from pipeline.domain.record import Reject, Sample
from pipeline.io import storage
from pipeline.io.build_dir import BuildDir, NotABuild
from pipeline.io.manifest import Counts, Manifest
from pipeline.io.publish import publish
from pipeline.io.storage import files_under, location, prefetch
from pipeline.sources.affectnet import AffectNetSource
from pipeline.sources.expw import ExpwSource
from pipeline.sources.fer2013 import Fer2013Source
from pipeline.sources.folder_csv import CsvSource
from pipeline.sources.jaffe import JaffeSource
from pipeline.sources.jsonl import JsonlSource
from pipeline.sources.rafdb import RafDbSource
from pipeline.stages.decode import DecodeStage


def _parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _fake_build(root: Path, tag: str, rows: int) -> None:
    """A staged build: one shard of `rows` rows, a rejects file, the resumable work folder, and the manifest."""
    (root / "data" / "train-00000-of-00001.parquet").write_bytes(
        _parquet([{"sample_id": f"{tag}{i}", "split": "train"} for i in range(rows)]))
    (root / "rejects" / "rejects-00000-of-00001.parquet").write_bytes(_parquet([{"reason": "no_face"}]))
    (root / "_work" / "done-00000.json").write_text("{}")
    BuildDir(root).write_manifest(Manifest(counts=Counts(inputs=rows + 1, accepted_inputs=rows, rejected_inputs=1,
                                                          rows=rows), splits=["train"]))


def test_publish_replaces_a_release_with_the_manifest_last(s3: S3Server) -> None:
    bucket = s3.bucket("releases")
    target = BuildDir(f"s3://{bucket}/v1")
    old = location(f"s3://{bucket}/v1.partial")
    _fake_build(old, "old", 3)
    (old / "data" / "test-00000-of-00001.parquet").write_bytes(_parquet([{"sample_id": "gone", "split": "test"}]))
    publish(BuildDir(old), target)
    assert target.manifest.counts.rows == 3 and BuildDir(target.root).splits() == ["test", "train"]

    staged = BuildDir(f"s3://{bucket}/v1.partial")
    _fake_build(staged.root, "new", 2)
    with pytest.raises(NotABuild, match="no manifest.json"):
        _ = BuildDir(f"s3://{bucket}/v1.partial/data").manifest
    publish(staged, target)
    release = BuildDir(f"s3://{bucket}/v1")  # a fresh reader
    assert release.manifest.counts.rows == 2
    assert release.read_rows(["sample_id"]).column("sample_id").to_pylist() == ["new0", "new1"]
    # Nothing of the old release survives, the work folder is not published, the staging prefix is gone.
    assert s3.keys(bucket) == ["v1/data/train-00000-of-00001.parquet", "v1/manifest.json",
                               "v1/rejects/rejects-00000-of-00001.parquet"]


def test_a_release_without_its_manifest_is_not_a_build(s3: S3Server, capsys) -> None:
    from pipeline.cli import main

    bucket = s3.bucket("releases")
    s3.client().put_object(Bucket=bucket, Key="half/data/train-00000-of-00001.parquet",
                           Body=_parquet([{"sample_id": "a"}]))
    with pytest.raises(NotABuild):
        _ = BuildDir(f"s3://{bucket}/half").manifest
    assert main(["inspect", f"s3://{bucket}/half"]) == 3
    assert "no manifest.json" in capsys.readouterr().err


def _jpeg(size: int = 96) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 120, 90)).save(buf, format="JPEG")
    return buf.getvalue()


def test_a_csv_corpus_on_s3_is_listed_and_read_by_the_workers(s3: S3Server) -> None:
    bucket = s3.bucket("corpora")
    client = s3.client()
    client.put_object(Bucket=bucket, Key="c/labels.csv",
                      Body=b"image,emotion\na.jpg,happiness\nmissing.jpg,anger\n../../other/x.jpg,fear\nb.jpg,smug\n")
    for name in ("a.jpg", "b.jpg"):
        client.put_object(Bucket=bucket, Key=f"c/images/{name}", Body=_jpeg())
    client.put_object(Bucket=bucket, Key="other/x.jpg", Body=_jpeg())
    source = CsvSource("c", location(f"s3://{bucket}/c"), {"image_dir": "images"})
    entries = list(source.checked_items())
    items = [e for e in entries if not isinstance(e, Reject)]
    assert [(i.source_item, i.uri, i.emotion) for i in items] == [
        ("images/a.jpg", f"s3://{bucket}/c/images/a.jpg", "happiness")]  # a URL, never a local path
    assert sorted((r.source_item, r.reason) for r in entries if isinstance(r, Reject)) == [
        ("../../other/x.jpg", "path_outside_root"), ("images/b.jpg", "unknown_label"),
        ("images/missing.jpg", "file_not_found")]
    decoded = list(DecodeStage(DecodeConfig()).run(items[0]))
    assert isinstance(decoded[0], Sample) and decoded[0].pixels.shape == (96, 96, 3)
    # A worker fetches a shard's images together before decoding them one by one; each is handed out once.
    prefetch([items[0].uri, f"s3://{bucket}/c/images/absent.jpg"])
    client.delete_object(Bucket=bucket, Key="c/images/a.jpg")  # gone between listing and reading
    assert storage.size(items[0].uri) == len(_jpeg()) and storage.read_bytes(items[0].uri) == _jpeg()
    gone = list(DecodeStage(DecodeConfig()).run(items[0]))
    assert isinstance(gone[0], Reject) and gone[0].reason == "file_not_found"


def _listed(entries: list) -> list[tuple]:
    """What an adapter says about a corpus, wherever the corpus is (the URIs left out: they name the place)."""
    return [(type(e).__name__, e.source, e.source_item, e.frame_index, getattr(e, "emotion", None),
             getattr(e, "split", None), getattr(e, "subject_id", None), getattr(e, "reason", None),
             getattr(e, "data", None)) for e in entries]


@pytest.mark.parametrize(("corpus", "cls", "options"), [
    ("rafdb", RafDbSource, {}), ("affectnet_folders", AffectNetSource, {}), ("affectnet_csv", AffectNetSource, {}),
    ("fer2013", Fer2013Source, {}), ("expw", ExpwSource, {}), ("jsonl_corpus", JsonlSource, {"image_dir": "images"}),
    ("jaffe", JaffeSource, {}),
])
def test_folder_adapters_list_an_s3_corpus_as_they_list_a_local_one(corpus: str, cls, options, request,
                                                                     s3: S3Server) -> None:
    root = request.getfixturevalue(corpus)
    bucket = s3.bucket("corpora")
    s3.upload(root, bucket, "c")
    local = list(cls("x", root, options).checked_items())
    remote = list(cls("x", location(f"s3://{bucket}/c"), options).checked_items())
    assert _listed(remote) == _listed(local) and len(local) > 1
    items = [e for e in remote if not isinstance(e, Reject)]
    assert items and all(i.data is not None or i.uri.startswith(f"s3://{bucket}/c/") for i in items)
    first = next(i for i in items if i.data is None) if any(i.data is None for i in items) else items[0]
    assert isinstance(DecodeStage(DecodeConfig()).run(first).__next__(), Sample)


@pytest.fixture
def jaffe(tmp_path: Path, demo_dir: Path) -> Path:
    for index, name in enumerate(["KA.AN1.39.tiff", "KA.HA2.30.tiff", "KL.XX1.1.tiff", "photo.tiff"]):
        face(demo_dir, tmp_path / "jaffe" / name, index)
    return tmp_path / "jaffe"


# ----------------------------------------------------------------------------------- the whole build (slow)


def fea(args: list[str], env: dict[str, str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env={**os.environ, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=900, **kwargs)


@pytest.fixture(scope="module")
def sample_on_s3(s3_server: S3Server) -> str:
    """The shared sample corpus (labels.csv + images/) uploaded to s3://<bucket>/sample."""
    corpus = require_shared(WILD_SAMPLE / "labels.csv").parent
    bucket = s3_server.bucket("corpora")
    s3_server.upload(corpus, bucket, "sample")
    return f"s3://{bucket}/sample"


@pytest.fixture(scope="module")
def release_on_s3(s3_server: S3Server, sample_on_s3: str, tmp_path_factory) -> tuple[str, subprocess.CompletedProcess]:
    """`fea build --source csv:s3://.../sample,image_dir=images --output s3://.../sample`, run as a user runs it."""
    cwd = tmp_path_factory.mktemp("cwd")
    url = f"s3://{s3_server.bucket('releases')}/sample"
    done = fea(["build", "--no-progress", "--source", f"csv:{sample_on_s3},image_dir=images", "--output", url],
               s3_server.env, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # nothing written to a local folder named after the URL (or anywhere here)
    return url, done


def _rows(url: str) -> pa.Table:
    build = BuildDir(url)
    return build.read_rows(build.parquet(build.shards()[0]).schema_arrow.names).sort_by("sample_id")


@pytest.mark.slow
def test_the_sample_corpus_builds_from_s3_to_s3(s3: S3Server, release_on_s3, tmp_path: Path) -> None:
    url, done = release_on_s3
    bucket, prefix = url[len("s3://"):].split("/", 1)
    keys = s3.keys(bucket)
    assert {f"{prefix}/manifest.json", f"{prefix}/README.md", f"{prefix}/validation/result.json"} <= set(keys)
    assert any(k.startswith(f"{prefix}/data/") for k in keys) and any(k.startswith(f"{prefix}/rejects/") for k in keys)
    assert not [k for k in keys if k.startswith(f"{prefix}.partial")]  # staging removed once published
    manifest = json.loads(s3.read(bucket, f"{prefix}/manifest.json"))
    counts = manifest["counts"]
    assert counts["inputs"] == 185 == counts["accepted_inputs"] + counts["rejected_inputs"]
    assert manifest["resume"] == {"shards": 4, "shard_size": 50, "reused": 0}
    # The shards load with pyarrow straight from S3 (its own S3 client, configured from the environment).
    shards = [f"{bucket}/{s['path'] if s['path'].startswith(prefix) else prefix + '/' + s['path']}"
              for s in manifest["shards"]]
    import pyarrow.fs

    table = pq.ParquetDataset(shards, filesystem=pyarrow.fs.S3FileSystem(endpoint_override=s3.endpoint)).read(
        columns=["sample_id", "split"])
    assert table.num_rows == counts["rows"] > 0
    # The secret never reaches the output, the logs or the release's files.
    assert s3.secret not in done.stdout + done.stderr
    assert not [k for k in keys if k.startswith(prefix) and s3.secret.encode() in s3.read(bucket, k)]
    assert "fea-test-key-id" not in json.dumps(manifest)

    # Every reader takes the URL: validate, inspect, report, export, and the trainer's loader (datasets).
    for args in (["validate", url, "--reverify-rows", "50"], ["inspect", url],
                 ["report", url, "--output", str(tmp_path / "report.html")],
                 ["export", url, "--format", "llava", "-o", str(tmp_path / "llava"), "--images", "none"]):
        ran = fea(args, s3.env, tmp_path)
        assert ran.returncode == 0, (args, ran.stderr[-2000:])
    assert "inputs 185 = " in fea(["inspect", url], s3.env, tmp_path).stdout
    from pipeline.train.data import load_split

    train = load_split(url, "train")
    assert len(train) == counts["rows_by_split"]["train"]


def _markers(s3: S3Server, work: str) -> int:
    bucket, prefix = work[len("s3://"):].split("/", 1)
    return sum(1 for k in s3.keys(bucket, prefix) if k.rsplit("/", 1)[-1].startswith("done-"))


@pytest.mark.slow
def test_a_build_killed_at_60_percent_resumes_on_s3(s3: S3Server, sample_on_s3: str, release_on_s3,
                                                     tmp_path: Path) -> None:
    """Killed once 6 of its 10 shards are done, the rerun redoes only the other shards and ends with the rows of
    the uninterrupted build."""
    reference, _ = release_on_s3
    url = f"s3://{s3.bucket('releases')}/resumed"
    args = ["build", "--no-progress", "--no-validate", "--workers", "1", "--set", "runner.shard_size=19",
            "--source", f"csv:{sample_on_s3},image_dir=images", "--output", url]
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env={**os.environ, **s3.env}, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while _markers(s3, f"{url}.partial/_work") < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the build ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Beam workers
    proc.wait(timeout=60)
    finished = _markers(s3, f"{url}.partial/_work")
    with pytest.raises(NotABuild):
        _ = BuildDir(url).manifest  # nothing published

    rerun = fea(args, s3.env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resume = BuildDir(url).manifest.resume
    assert resume.shards == 10 and resume.reused == finished >= 6
    assert f"resumed: {finished} of 10 shards" in rerun.stdout
    assert _rows(url).equals(_rows(reference))  # identical rows, every column
    print(f"shards redone after the kill: {10 - finished} of 10 ({(10 - finished) / 10:.0%} of the image work)")
    assert files_under(location(f"{url}.partial")) == []
