"""Uploads that are killed, or whose server goes away, and the reruns that complete them."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from seaweed import SeaweedServer
from test_upload import SMALL_PARTS, bucket_objects, local_release, write

from batchlib.errors import RemoteUnreachableError
from batchlib.s3 import TransferOptions, upload_plate

MIB = 2**20


def upload_command(plate, url, endpoint, *extra):
    return [sys.executable, "-m", "batchlib.cli", "upload", plate, url, "--endpoint-url", endpoint, *extra]


def wait_for(condition, timeout=60.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)


def test_killed_multipart_upload_is_invisible_then_resumed_without_stray_parts(tmp_path, s3_server, bucket, caplog):
    plate = str(tmp_path / "P001")
    big = os.urandom(80 * MIB + 5)
    write(f"{plate}/big.h5", big)
    write(f"{plate}/small.png", b"small")
    client = s3_server.client()
    key = "r/P001/big.h5"
    args = ["--part-size-mb", "5", "--multipart-threshold-mb", "6", "--concurrency", "1"]
    process = subprocess.Popen(upload_command(plate, f"s3://{bucket}/r", s3_server.endpoint_url, *args))

    def some_parts_uploaded():
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if not uploads:
            return False
        parts = client.list_parts(Bucket=bucket, Key=key, UploadId=uploads[0]["UploadId"]).get("Parts", [])
        return len(parts) >= 3

    try:
        wait_for(some_parts_uploaded)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # Killed mid-upload: nothing visible under the final key.
    assert key not in bucket_objects(client, bucket)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads")

    with caplog.at_level(logging.INFO, logger="Workflow"):
        report = upload_plate(plate, f"s3://{bucket}/r", s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    assert report.ok and "big.h5" in report.sent
    assert "resuming the upload of r/P001/big.h5" in caplog.text
    assert bucket_objects(client, bucket)[key] == big
    assert client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"').endswith("-17")
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # no stray parts


def test_a_stale_unrecorded_multipart_upload_is_aborted(tmp_path, s3_server, bucket):
    plate = str(tmp_path / "P001")
    write(f"{plate}/a.h5", b"a")
    client = s3_server.client()
    stray = client.create_multipart_upload(Bucket=bucket, Key="r/P001/a.h5")["UploadId"]
    client.upload_part(Bucket=bucket, Key="r/P001/a.h5", UploadId=stray, PartNumber=1, Body=b"x" * 100)
    upload_plate(plate, f"s3://{bucket}/r", s3_server.endpoint_url, progress=False)
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert bucket_objects(client, bucket)["r/P001/a.h5"] == b"a"


@pytest.fixture
def own_server(tmp_path, s3_env):
    """A server of its own, for a test that stops and restarts it."""
    server = SeaweedServer(str(tmp_path / "seaweedfs")).start()
    yield server
    server.stop()


def test_server_stopped_mid_run_fails_clearly_and_rerun_completes(tmp_path, own_server):
    plate = str(tmp_path / "P001")
    for i in range(400):
        write(f"{plate}/P001_qc/{i:04d}.png", os.urandom(64 * 1024))
    own_server.client().create_bucket(Bucket="stop-test")
    url = "s3://stop-test/r"
    index_folder = f"{plate}/batchlib/transfers"
    args = ["--concurrency", "1", "--max-attempts", "2"]
    process = subprocess.Popen(
        upload_command(plate, url, own_server.endpoint_url, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )

    def some_files_recorded():
        if not os.path.isdir(index_folder):
            return False
        return sum(open(os.path.join(index_folder, n)).read().count("\n") for n in os.listdir(index_folder)) > 20

    try:
        wait_for(some_files_recorded)
        own_server.stop()
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1, err.decode()
    assert "cannot reach" in err.decode() and "rerun" in err.decode()

    own_server.start()
    report = upload_plate(plate, url, own_server.endpoint_url, progress=False)
    assert report.ok and 0 < len(report.sent) < 401 and len(report.skipped) > 0
    objects = bucket_objects(own_server.client(), "stop-test")
    assert {k.removeprefix("r/P001/") for k in objects} == set(local_release(plate))
    for rel, data in local_release(plate).items():
        assert objects[f"r/P001/{rel}"] == data


def test_unreachable_endpoint_raises_after_retries(tmp_path, s3_env):
    plate = str(tmp_path / "P001")
    write(f"{plate}/a.h5", b"a")
    from seaweed import free_port

    options = TransferOptions(max_attempts=2)
    with pytest.raises(RemoteUnreachableError, match="cannot reach http://127.0.0.1"):
        upload_plate(plate, "s3://bucket/r", f"http://127.0.0.1:{free_port()}", options=options, progress=False)
