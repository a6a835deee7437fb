"""A local S3 API for the tests: moto in server mode, started by the test session, spoken to over real HTTP by
boto3, s3fs, pyarrow, Beam and DVC alike. Credentials and the endpoint reach them the standard way only:
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION in the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]  # the variables a client needs; the secret is unique to the session, to be searched for

    @property
    def secret(self) -> str:
        return self.env["AWS_SECRET_ACCESS_KEY"]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.secret, region_name=self.env["AWS_DEFAULT_REGION"])

    def bucket(self, prefix: str) -> str:
        """A new, empty bucket (moto keeps its state for the whole session)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def upload(self, folder: Path, bucket: str, prefix: str) -> None:
        client = self.client()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start() -> tuple[subprocess.Popen, S3Server]:
    """Start moto's server on a free loopback port and wait until it answers (at most 60 s)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    server = S3Server(f"http://127.0.0.1:{port}", {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "fea-test-key-id",
        "AWS_SECRET_ACCESS_KEY": f"fea-test-secret-{uuid.uuid4().hex}",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    deadline = time.monotonic() + 60
    while True:
        try:
            server.client().list_buckets()
            return proc, server
        except Exception as exc:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the local S3 server (moto) did not start: {exc}") from exc
            time.sleep(0.2)
