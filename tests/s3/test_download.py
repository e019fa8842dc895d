"""Download a released plate back from a real S3 server (SeaweedFS)."""

import hashlib
import os
from pathlib import Path

import pytest
from test_upload import SMALL_PARTS, local_release, make_plate

from batchlib.errors import UnsafePathError
from batchlib.s3 import download_plate, upload_plate
from batchlib.s3.download import local_target
from batchlib.s3.local import PART_PREFIX


@pytest.fixture
def released(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path / "here")
    upload_plate(plate, f"s3://{bucket}/release", s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    return plate, f"s3://{bucket}/release/P001"


def test_download_round_trip_is_byte_identical_and_rerun_fetches_nothing(tmp_path, s3_server, released):
    plate, url = released
    dest = tmp_path / "there" / "P001"
    report = download_plate(url, dest, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    assert report.ok and report.sent
    assert local_release(str(dest)) == local_release(plate)
    again = download_plate(url, dest, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    assert again.sent == [] and {why for _, why in again.skipped} == {"unchanged since downloaded"}

    # A local file damaged after the download is fetched again; nothing else is.
    damaged = dest / "P001_table.hdf5"
    damaged.write_bytes(b"damaged")
    third = download_plate(url, dest, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    assert third.sent == ["P001_table.hdf5"]
    assert local_release(str(dest)) == local_release(plate)


def test_download_include_and_existing_identical_files(tmp_path, s3_server, released):
    plate, url = released
    dest = tmp_path / "there"
    report = download_plate(url, dest, s3_server.endpoint_url, include=["*_qc", "*.h5"], progress=False)
    got = local_release(str(dest))
    assert set(got) == {rel for rel in local_release(plate) if rel.endswith(".h5") or rel.startswith("P001_qc/")}
    assert len(report.sent) == len(got)
    # Files that are already here with the same content (no index) are not fetched.
    other = tmp_path / "copy"
    os.makedirs(other / "P001_qc")
    (other / "P001_qc" / "cell_count.png").write_bytes(Path(f"{plate}/P001_qc/cell_count.png").read_bytes())
    second = download_plate(url, other, s3_server.endpoint_url, include=["*_qc"], progress=False)
    assert second.sent == [] and second.skipped == [("P001_qc/cell_count.png", "already here with the same checksum")]


def test_partial_download_is_continued_and_verified(tmp_path, s3_server, released):
    plate, url = released
    dest = tmp_path / "there"
    name = "WellC02_PointC02_0001_ChannelDAPI,WF_GFP,TRITC_Seq0009.h5"
    full = Path(f"{plate}/{name}").read_bytes()
    client = s3_server.client()
    bucket = url.split("/")[2]
    etag = client.head_object(Bucket=bucket, Key=f"release/P001/{name}")["ETag"].strip('"')
    os.makedirs(dest)
    tag = hashlib.sha1(etag.encode()).hexdigest()[:12]
    (dest / f"{PART_PREFIX}{tag}-{name}").write_bytes(full[: 5 * 2**20 + 7])  # a killed run's partial file
    report = download_plate(url, dest, s3_server.endpoint_url, include=[name], options=SMALL_PARTS, progress=False)
    assert report.sent == [name]
    assert (dest / name).read_bytes() == full
    assert not [n for n in os.listdir(dest) if n.startswith(PART_PREFIX)]

    # A partial file with wrong bytes fails the checksum: clear error, no file under the final name.
    os.remove(dest / name)
    (dest / f"{PART_PREFIX}{tag}-{name}").write_bytes(b"x" * (5 * 2**20))
    bad = download_plate(url, dest, s3_server.endpoint_url, include=[name], options=SMALL_PARTS, progress=False)
    assert not bad.ok and "SHA-256" in bad.failed[0][1] and name in bad.failed[0][0]
    assert not (dest / name).exists()
    fixed = download_plate(url, dest, s3_server.endpoint_url, include=[name], options=SMALL_PARTS, progress=False)
    assert fixed.ok and (dest / name).read_bytes() == full


@pytest.mark.parametrize("rel", ["../escape.txt", "/etc/passwd", "a//b", "a/./b", "a\\..\\b", "", "a/../../b"])
def test_hostile_object_paths_are_refused(tmp_path, rel):
    with pytest.raises(UnsafePathError):
        local_target(str(tmp_path), rel)


def test_object_path_through_a_symlink_outside_is_refused(tmp_path):
    dest = tmp_path / "dest"
    os.makedirs(dest)
    os.symlink(tmp_path, dest / "link")
    with pytest.raises(UnsafePathError, match="outside"):
        local_target(str(dest), "link/x.txt")


def test_bookkeeping_objects_are_never_downloaded(tmp_path, s3_server, released):
    plate, url = released
    bucket = url.split("/")[2]
    s3_server.client().put_object(Bucket=bucket, Key="release/P001/batchlib/ledger.journal", Body=b"hostile")
    dest = tmp_path / "there"
    report = download_plate(url, dest, s3_server.endpoint_url, progress=False)
    assert report.excluded == [("batchlib/ledger.journal", report.excluded[0][1])]
    assert "bookkeeping" in report.excluded[0][1] and not report.ok
    assert not (dest / "batchlib" / "ledger.journal").exists()
