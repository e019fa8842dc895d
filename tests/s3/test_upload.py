"""Upload a plate folder to a real S3 server (SeaweedFS) and check what is in the bucket."""

import csv
import hashlib
import io
import os
import shutil
from pathlib import Path

import pytest

from batchlib.errors import RemoteAccessError
from batchlib.s3 import TransferOptions, upload_plate
from batchlib.s3.local import release_files

MIB = 2**20
SMALL_PARTS = TransferOptions(part_size=5 * MIB, multipart_threshold=6 * MIB, concurrency=4, max_attempts=2)


def write(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_plate(root, name="P001") -> str:
    """A plate folder with one file of every kind, an 11 MiB container (multipart) and bookkeeping."""
    plate = os.path.join(root, name)
    rng = __import__("random").Random(0)
    for well, site in [("C01", 0), ("C01", 1), ("C02", 0)]:
        stem = f"Well{well}_Point{well}_{site:04d}_ChannelDAPI,WF_GFP,TRITC_Seq{site:04d}"
        write(f"{plate}/{stem}.h5", rng.randbytes(3000 + site))
        for label in (1, 2):
            write(f"{plate}/{stem}.crops/{label}_mask.png", rng.randbytes(200))
        write(f"{plate}/{stem}.crops/crops.csv", b"label,x\n1,2\n")
    write(f"{plate}/WellC02_PointC02_0001_ChannelDAPI,WF_GFP,TRITC_Seq0009.h5", rng.randbytes(11 * MIB + 123))
    write(f"{plate}/{name}_table.hdf5", rng.randbytes(4000))
    write(f"{plate}/{name}_qc/cell_count.png", rng.randbytes(500))
    write(f"{plate}/{name}_profiles/wells.csv", b"well,n\nC01,3\n")
    write(f"{plate}/{name}.ome.zarr/.zattrs", b"{}")
    write(f"{plate}/{name}.ome.zarr/C/1/0/0/.zarray", b"{}")
    write(f"{plate}/{name}.ome.zarr/C/1/0/0/0.0", rng.randbytes(100))
    write(f"{plate}/batchlib/ledger.journal", b"not uploaded\n")
    write(f"{plate}/.batchlib-tmp-abc-x.h5", b"temporary, not uploaded")
    return plate


def bucket_objects(client, bucket) -> dict[str, bytes]:
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return objects


def local_release(plate) -> dict[str, bytes]:
    files, _ = release_files(plate)
    return {f.rel: Path(f.path).read_bytes() for f in files}


def test_first_upload_puts_every_file_with_checksum_and_manifest(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    report = upload_plate(plate, f"s3://{bucket}/release", s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    client = s3_server.client()
    objects = bucket_objects(client, bucket)
    expected = local_release(plate)
    assert "P001_manifest.csv" in expected
    assert {f"release/P001/{rel}" for rel in expected} == set(objects)
    for rel, data in expected.items():
        assert objects[f"release/P001/{rel}"] == data, rel
    assert not any("batchlib/" in key or ".batchlib-tmp" in key for key in objects)
    big = "release/P001/WellC02_PointC02_0001_ChannelDAPI,WF_GFP,TRITC_Seq0009.h5"
    head = client.head_object(Bucket=bucket, Key=big)
    assert head["Metadata"]["batchlib-sha256"] == hashlib.sha256(objects[big]).hexdigest()
    assert head["ETag"].strip('"').endswith("-3")  # 11 MiB + 123 bytes in 5 MiB parts: multipart
    assert report.ok and len(report.sent) == len(expected)

    rows = list(csv.DictReader(io.StringIO(objects["release/P001/P001_manifest.csv"].decode())))
    assert len(rows) == len(expected) - 1  # every file but the manifest itself
    by_path = {r["path"]: r for r in rows}
    crop = by_path["WellC01_PointC01_0001_ChannelDAPI,WF_GFP,TRITC_Seq0001.crops/2_mask.png"]
    assert crop["s3_url"] == f"s3://{bucket}/release/P001/{crop['path']}"
    assert (crop["well"], crop["site"], crop["kind"], crop["plate"]) == ("C01", "1", "crops", "P001")
    assert crop["sha256"] == hashlib.sha256(expected[crop["path"]]).hexdigest()
    assert int(crop["size"]) == len(expected[crop["path"]])
    assert crop["https_url"] == ""  # plain-http endpoint: no public https URL
    assert by_path["P001.ome.zarr/C/1/0/0/0.0"]["well"] == "C01"
    assert by_path["P001_table.hdf5"]["kind"] == "plate_table"


def test_rerun_sends_nothing_and_a_changed_file_is_the_only_one_sent(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    url = f"s3://{bucket}/r"
    upload_plate(plate, url, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    again = upload_plate(plate, url, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    assert again.sent == [] and again.bytes_sent == 0
    assert all(why == "unchanged since uploaded" for _, why in again.skipped)

    changed = f"{plate}/P001_qc/cell_count.png"
    write(changed, b"new heatmap")
    os.utime(f"{plate}/P001_table.hdf5")  # touched, same content: not sent
    third = upload_plate(plate, url, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    assert third.sent == ["P001_manifest.csv", "P001_qc/cell_count.png"]
    client = s3_server.client()
    assert client.get_object(Bucket=bucket, Key="r/P001/P001_qc/cell_count.png")["Body"].read() == b"new heatmap"
    manifest = client.get_object(Bucket=bucket, Key="r/P001/P001_manifest.csv")["Body"].read().decode()
    assert hashlib.sha256(b"new heatmap").hexdigest() in manifest


def test_index_lost_rerun_sends_nothing(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    url = f"s3://{bucket}/r"
    upload_plate(plate, url, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    shutil.rmtree(f"{plate}/batchlib")
    again = upload_plate(plate, url, s3_server.endpoint_url, options=SMALL_PARTS, progress=False)
    assert again.sent == []
    assert {why for _, why in again.skipped} == {"already in the bucket with the same checksum"}


def test_dry_run_lists_actions_and_sends_nothing(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    report = upload_plate(plate, f"s3://{bucket}/r", s3_server.endpoint_url, dry_run=True, progress=False)
    assert report.planned and all(action == "upload" for action, _, _ in report.planned)
    assert {rel for _, rel, _ in report.planned} == set(local_release(plate)) - {"P001_manifest.csv"}
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)
    assert not os.path.exists(f"{plate}/P001_manifest.csv")


def test_include_and_kinds_select_files(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    upload_plate(plate, f"s3://{bucket}/a", s3_server.endpoint_url, kinds=["qc", "plate_table"], progress=False)
    upload_plate(plate, f"s3://{bucket}/b", s3_server.endpoint_url, include=["*.crops/*_mask.png"], progress=False)
    keys = set(bucket_objects(s3_server.client(), bucket))
    assert {k for k in keys if k.startswith("a/")} == {
        "a/P001/P001_qc/cell_count.png",
        "a/P001/P001_table.hdf5",
        "a/P001/P001_manifest.csv",
    }
    b_keys = {k for k in keys if k.startswith("b/") and not k.endswith("_manifest.csv")}
    assert len(b_keys) == 6 and all(k.endswith("_mask.png") for k in b_keys)


def test_symlink_outside_the_plate_is_not_uploaded(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not publish")
    os.symlink(secret, f"{plate}/P001_qc/leak.png")
    os.symlink(tmp_path, f"{plate}/P001_qc/up")
    report = upload_plate(plate, f"s3://{bucket}/r", s3_server.endpoint_url, progress=False)
    keys = set(bucket_objects(s3_server.client(), bucket))
    assert not any("leak" in k or "/up" in k for k in keys)
    assert {rel for rel, _ in report.excluded} == {"P001_qc/leak.png", "P001_qc/up"}
    assert not report.ok  # refused files are reported (exit code 1 from the command)


def test_missing_bucket_and_wrong_credentials_give_clear_errors(tmp_path, s3_server, s3_env, monkeypatch):
    plate = make_plate(tmp_path)
    with pytest.raises(RemoteAccessError, match="bucket 'no-such-bucket' does not exist"):
        upload_plate(plate, "s3://no-such-bucket/r", s3_server.endpoint_url, progress=False)
    assert "no-such-bucket" not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong-key")
    with pytest.raises(RemoteAccessError, match="rejected the credentials|access denied"):
        upload_plate(plate, "s3://some-bucket/r", s3_server.endpoint_url, progress=False)


def test_odd_file_names_stay_inside_the_prefix(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    odd = ["..evil.png", "P001_qc/a b&c=d.png", "P001_qc/Zellkern_ä.png", "P001_qc/...", "-rf"]
    for name in odd:
        write(f"{plate}/{name}", name.encode())
    report = upload_plate(plate, f"s3://{bucket}/r", s3_server.endpoint_url, progress=False)
    assert report.ok
    objects = bucket_objects(s3_server.client(), bucket)
    assert all(key.startswith("r/P001/") for key in objects)
    for name in odd:
        assert objects[f"r/P001/{name}"] == name.encode()


def test_denied_access_is_a_clear_error_and_records_nothing(tmp_path, s3_server, bucket, monkeypatch):
    from seaweed import READER_KEY, READER_SECRET

    plate = make_plate(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READER_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READER_SECRET)
    with pytest.raises(RemoteAccessError, match=rf"access denied .* s3://{bucket}/r/P001/"):
        upload_plate(plate, f"s3://{bucket}/r", s3_server.endpoint_url, progress=False)
    index_folder = f"{plate}/batchlib/transfers"
    recorded = [n for n in os.listdir(index_folder)] if os.path.isdir(index_folder) else []
    assert all('"op":"done"' not in Path(index_folder, n).read_text() for n in recorded)
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)
