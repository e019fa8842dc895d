"""`batchlib upload` / `batchlib download` and the workflow's UploadJob against SeaweedFS."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from seaweed import ACCESS_KEY, SECRET_KEY
from test_upload import bucket_objects, local_release, make_plate, write

from batchlib import run_workflow
from batchlib.cli import main
from batchlib.errors import ConfigError
from batchlib.jobs.upload import UploadJob
from batchlib.state.lock import FolderLock


def test_cli_upload_download_exit_codes_and_dry_run(tmp_path, s3_server, bucket, capsys, monkeypatch):
    monkeypatch.setenv("LOGLEVEL", "INFO")
    plate = make_plate(tmp_path)
    url, endpoint = f"s3://{bucket}/rel", ["--endpoint-url", s3_server.endpoint_url]

    assert main(["upload", plate, url, *endpoint, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "upload   P001_table.hdf5  (new: not in the bucket)" in out and "dry run, nothing transferred" in out
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)

    assert main(["upload", plate, url, *endpoint]) == 0
    assert f"uploaded {len(local_release(plate))} file(s)" in capsys.readouterr().out
    assert main(["upload", plate, url, *endpoint]) == 0
    assert "uploaded 0 file(s)" in capsys.readouterr().out
    log = Path(plate, "batchlib", "Upload.log").read_text()
    assert f"upload s3://{bucket}/rel/P001: uploaded {len(local_release(plate))} file(s)" in log

    dest = tmp_path / "copy" / "P001"
    assert main(["download", f"{url}/P001", str(dest), *endpoint]) == 0
    assert local_release(str(dest)) == local_release(plate)

    # Missing bucket: exit 2 and a message naming it; a bad URL: exit 2 naming it.
    assert main(["upload", plate, "s3://missing-bucket/x", *endpoint]) == 2
    assert "bucket 'missing-bucket' does not exist" in capsys.readouterr().err
    assert main(["upload", plate, "http://not-s3/x", *endpoint]) == 2
    assert "expected an S3 URL" in capsys.readouterr().err

    # A folder locked by a running workflow: exit 75.
    with FolderLock(os.path.join(plate, "batchlib"), workflow="Other"):
        assert main(["upload", plate, url, *endpoint]) == 75
    assert_no_credentials_under(plate)


def test_cli_wrong_credentials_exit_2_with_a_clear_message(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="not-a-key", AWS_SECRET_ACCESS_KEY="nope")
    command = [sys.executable, "-m", "batchlib.cli", "upload", plate, f"s3://{bucket}/x"]
    result = subprocess.run(
        [*command, "--endpoint-url", s3_server.endpoint_url], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert "rejected the credentials" in result.stderr or "access denied" in result.stderr
    assert "Traceback" not in result.stderr


def test_upload_job_in_a_workflow_reruns_only_on_change(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    job = UploadJob(f"s3://{bucket}/wf", endpoint_url=s3_server.endpoint_url, part_size_mb=5, multipart_threshold_mb=6)
    first = run_workflow("Release", plate, [job], progress=False)["UploadJob"]
    assert first.processed == 1 and first.failed == 0
    assert os.path.exists(f"{plate}/P001_manifest.csv")
    objects = bucket_objects(s3_server.client(), bucket)
    assert {k.removeprefix("wf/P001/") for k in objects} == set(local_release(plate))

    second = run_workflow("Release", plate, [job], progress=False)["UploadJob"]
    assert second.processed == 0 and second.skipped == 1  # nothing changed: the job does not even run

    # A file deep inside a folder changes: the folder's own mtime does not, its tree stamp does.
    crop = f"{plate}/WellC01_PointC01_0000_ChannelDAPI,WF_GFP,TRITC_Seq0000.crops/1_mask.png"
    write(crop, b"new crop")
    third = run_workflow("Release", plate, [job], progress=False)["UploadJob"]
    assert third.processed == 1
    key = "wf/P001/WellC01_PointC01_0000_ChannelDAPI,WF_GFP,TRITC_Seq0000.crops/1_mask.png"
    assert bucket_objects(s3_server.client(), bucket)[key] == b"new crop"
    assert_no_credentials_under(plate)


def assert_no_credentials_under(folder):
    """No file batchlib wrote (ledger, status, logs, transfer index, manifest) holds the credentials."""
    for root, _, files in os.walk(folder):
        for name in files:
            content = Path(os.path.join(root, name)).read_bytes()
            assert SECRET_KEY.encode() not in content and ACCESS_KEY.encode() not in content, name


def test_upload_job_options_are_checked_when_built():
    with pytest.raises(ConfigError, match="part size"):
        UploadJob("s3://bucket/x", part_size_mb=1)
    with pytest.raises(ConfigError, match="must not contain credentials"):
        UploadJob("s3://bucket/x", endpoint_url="https://key:secret@example.org")


def test_cell_analysis_workflow_uploads_its_results(tmp_path, s3_server, bucket):
    from batchlib.cell_analysis import cell_analysis_main
    from batchlib.demo import write_demo_plate

    raw, folder = str(tmp_path / "raw"), str(tmp_path / "Plate7")
    write_demo_plate(raw, sites=1, seed=1)
    base = ["--input-folder", raw, "--folder", folder, "--nuclei-method", "threshold", "--skip", "export_omezarr"]
    upload = ["--upload-to", f"s3://{bucket}/screens", "--endpoint-url", s3_server.endpoint_url]
    assert cell_analysis_main([*base, *upload]) == 0
    keys = {k.removeprefix("screens/Plate7/") for k in bucket_objects(s3_server.client(), bucket)}
    assert keys == set(local_release(folder))
    assert {"Plate7_table.hdf5", "Plate7_manifest.csv"} <= keys and any(k.endswith(".h5") for k in keys)
    # Without a destination the default step list skips the upload; asking for it explicitly is an error.
    assert cell_analysis_main(base) == 0
    assert cell_analysis_main([*base, "--steps", "upload"]) == 2
