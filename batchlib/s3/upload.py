"""Upload a plate folder to ``s3://bucket/prefix/<plate>/``, incrementally and crash-safe.

Deciding is kept apart from doing: :func:`quick_action` (no network, no
reading) and :func:`upload_action` (given the content checksum and what the
bucket holds) are pure; :func:`upload_plate` does the work.

- A file whose stat stamp (size, mtime) equals the one recorded in the
  transfer index when it was last uploaded is not read again.
- Otherwise its SHA-256 is computed and compared with the checksum stored in
  the object's metadata (``x-amz-meta-batchlib-sha256``); only new or changed
  content is sent. Without the index (deleted, another machine) nothing that
  is already in the bucket is sent again.
- Files of at least ``multipart_threshold`` bytes go multipart. S3 shows an
  object only once its upload is complete, so a killed upload never leaves a
  partial object under the final key; the in-flight upload is recorded in the
  index, and a rerun resumes it (parts already there are checked against
  their MD5 and kept) and aborts any other unfinished upload of the plate.
- A manifest CSV (one row per file: S3 URL, https URL, size, checksum,
  plate, well, site, kind) is written beside the data as
  ``<plate>_manifest.csv`` and uploaded last.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import mimetypes
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import OutputError
from ..state import BOOKKEEPING_FOLDER
from ..state.atomic import atomic_write
from ..state.stamps import stat_stamp
from .client import call, check_bucket, list_multipart_uploads, list_objects, make_client
from .index import TransferIndex, index_path
from .local import LocalFile, file_kind, release_files, sha256_file, well_and_site
from .location import S3Url, check_endpoint, https_url, object_url
from .transfer import SHA_META, TransferOptions, TransferReport, logger, transfer_all

UPLOAD, SKIP = "upload", "skip"
#: S3 allows at most this many parts per upload.
MAX_PARTS = 10_000

MANIFEST_COLUMNS = ("s3_url", "https_url", "path", "size", "sha256", "plate", "well", "site", "kind")


@dataclass(frozen=True)
class RemoteObject:
    """What the bucket holds under a key: size and the batchlib checksum (None if it has none)."""

    size: int
    sha256: str | None


def quick_action(file: LocalFile, key: str, indexed: dict | None) -> tuple[str, str] | None:
    """Decide without reading the file or asking the bucket, if possible.

    Returns ``(SKIP, reason)`` if the file is unchanged since it was uploaded
    to ``key``, else None (the content must be checked).

    Examples
    --------
    >>> f = LocalFile("/p/a.h5", "a.h5", 10, "10:5")
    >>> quick_action(f, "r/p/a.h5", {"stamp": "10:5", "key": "r/p/a.h5"})
    ('skip', 'unchanged since uploaded')
    >>> quick_action(f, "r/p/a.h5", {"stamp": "10:6", "key": "r/p/a.h5"}) is None
    True
    """
    if indexed is not None and indexed.get("stamp") == file.stamp and indexed.get("key") == key:
        return SKIP, "unchanged since uploaded"
    return None


def upload_action(size: int, sha256: str, remote: RemoteObject | None) -> tuple[str, str]:
    """Decide whether content of ``size`` bytes and checksum ``sha256`` must be sent.

    Examples
    --------
    >>> upload_action(5, "ab", None)
    ('upload', 'new: not in the bucket')
    >>> upload_action(5, "ab", RemoteObject(5, "ab"))
    ('skip', 'already in the bucket with the same checksum')
    >>> upload_action(5, "ab", RemoteObject(5, "cd"))
    ('upload', "changed: checksum differs from the bucket's")
    """
    if remote is None:
        return UPLOAD, "new: not in the bucket"
    if remote.size != size:
        return UPLOAD, f"changed: {size} bytes here, {remote.size} in the bucket"
    if remote.sha256 is None:
        return UPLOAD, "in the bucket without a batchlib checksum"
    if remote.sha256 != sha256:
        return UPLOAD, "changed: checksum differs from the bucket's"
    return SKIP, "already in the bucket with the same checksum"


def part_size_for(size: int, part_size: int) -> int:
    """The part size for a file of ``size`` bytes: ``part_size``, or larger if S3's 10,000 parts would not do.

    Examples
    --------
    >>> part_size_for(100 * 2**20, 16 * 2**20) == 16 * 2**20
    True
    >>> part_size_for(10**12, 16 * 2**20)  # 1 TB: 100 MB parts
    100000000
    """
    return max(part_size, -(-size // MAX_PARTS))


def manifest_name(plate: str) -> str:
    """File name of a plate's manifest."""
    return f"{plate}_manifest.csv"


def upload_plate(
    folder: str | os.PathLike,
    destination: str | S3Url,
    endpoint_url: str | None = None,
    include: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    options: TransferOptions | None = None,
    dry_run: bool = False,
    manifest_path: str | os.PathLike | None = None,
    progress: bool = True,
    client: Any = None,
) -> TransferReport:
    """Upload the release files of plate ``folder`` to ``destination/<plate>/``.

    Parameters
    ----------
    folder : path-like
        The plate folder; its name is the plate name.
    destination : str or S3Url
        ``s3://bucket/prefix``; objects go to ``prefix/<plate>/<path>``.
    endpoint_url : str, optional
        An S3-compatible server; default AWS.
    include : list of str, optional
        Glob patterns over paths in the folder (see :func:`release_files`).
    kinds : list of str, optional
        Kinds of output to upload (:data:`batchlib.s3.local.KINDS`).
    options : TransferOptions, optional
        Part size, threshold, concurrency, retries.
    dry_run : bool
        Only say what would be uploaded and why (reads checksums, sends nothing).
    manifest_path : path-like, optional
        Where to write the manifest (a workflow passes its temporary output
        path); default ``<folder>/<plate>_manifest.csv``.
    progress : bool
        Show a progress bar.
    client : optional
        A boto3 S3 client to use instead of making one.

    Returns
    -------
    TransferReport

    Raises
    ------
    RemoteAccessError
        Missing bucket, absent or refused credentials, access denied.
    RemoteUnreachableError
        The endpoint stopped answering (rerun to continue).
    """
    options = options or TransferOptions()
    endpoint_url = check_endpoint(endpoint_url)
    destination = S3Url.parse(destination) if isinstance(destination, str) else destination
    folder = os.path.abspath(folder)
    plate = os.path.basename(folder)
    target = destination.child(plate)
    report = TransferReport("upload", str(target))
    files, report.excluded = release_files(folder, include, kinds)
    name = manifest_name(plate)
    files = [f for f in files if f.rel != name]
    index = TransferIndex(
        index_path(os.path.join(folder, BOOKKEEPING_FOLDER), "upload", endpoint_url, str(target)), str(target)
    )
    uploader = _Uploader(index, target, endpoint_url, options, dry_run, client)
    try:
        todo = []
        for file in files:
            quick = quick_action(file, target.join(file.rel), index.done.get(file.rel))
            if quick is None:
                todo.append(file)
            elif dry_run:
                report.planned.append((quick[0], file.rel, quick[1]))
            else:
                report.skipped.append((file.rel, quick[1]))
        if todo:
            uploader.ensure_ready()
        transfer_all(todo, uploader.handle, options.concurrency, report, sum(f.size for f in todo), progress)
        report.planned.sort(key=lambda p: p[1])
        if dry_run or report.failed:
            return report
        report.manifest = _write_and_upload_manifest(folder, files, name, manifest_path, uploader, report)
        uploader.abort_stale()
        report.sent.sort()
        logger.info("%s", report.summary())
        return report
    finally:
        uploader.close()
        if not dry_run:
            index.compact()


class _Uploader:
    """The doing: one client, the bucket's listing, the part pool."""

    def __init__(self, index, target, endpoint_url, options, dry_run, client):
        self.index: TransferIndex = index
        self.target: S3Url = target
        self.endpoint_url = endpoint_url
        self.options: TransferOptions = options
        self.dry_run = dry_run
        self.client = client
        self.listing: dict[str, dict] = {}
        self.inflight: dict[str, list] = {}
        self.resumed: set[str] = set()
        self.parts = None
        self.lock = threading.Lock()

    def ensure_ready(self) -> None:
        """Make the client, check the bucket and list what is there, once, when there is work."""
        with self.lock:
            if self.parts is not None:
                return
            if self.client is None:
                connections = 2 * self.options.concurrency + 2
                self.client = make_client(self.endpoint_url, self.options.max_attempts, connections)
            bucket, prefix, endpoint = self.target.bucket, self.target.prefix, self.endpoint_url
            check_bucket(self.client, bucket, endpoint)
            self.listing = list_objects(self.client, bucket, prefix, endpoint)
            self.inflight = list_multipart_uploads(self.client, bucket, prefix, endpoint)
            self.parts = ThreadPoolExecutor(self.options.concurrency)

    def close(self) -> None:
        """Stop the part threads."""
        if self.parts is not None:
            self.parts.shutdown()

    def _call(self, action: str, key: str, method: str, **kwargs):
        return call(self.client, method, action, self.target.bucket, key, self.endpoint_url, **kwargs)

    def remote(self, key: str, size: int, uploaded_sha: str | None) -> RemoteObject | None:
        """What the bucket holds under ``key``.

        From the listing; the checksum is the one this folder uploaded there
        (``uploaded_sha``, from the index) or, without it, read with a HEAD.
        """
        listed = self.listing.get(key)
        if listed is None:
            return None
        if listed["size"] != size:
            return RemoteObject(listed["size"], None)
        if uploaded_sha is not None:
            return RemoteObject(size, uploaded_sha)
        head = self._call("checking", key, "head_object", Key=key)
        return RemoteObject(head["ContentLength"], head.get("Metadata", {}).get(SHA_META))

    def handle(self, file: LocalFile, stop: threading.Event) -> tuple[str, str, str, int]:
        """Check one file and upload it if needed."""
        if stop.is_set():
            return "failed", file.rel, "not attempted: the upload stopped", 0
        key = self.target.join(file.rel)
        indexed = self.index.done.get(file.rel)
        uploaded_sha = indexed.get("sha256") if indexed is not None and indexed.get("key") == key else None
        sha = sha256_file(file.path)
        action, reason = upload_action(file.size, sha, self.remote(key, file.size, uploaded_sha))
        if self.dry_run:
            return f"planned:{action}", file.rel, reason, file.size
        if action == SKIP:
            self._record(file, key, sha)
            return "skipped", file.rel, reason, file.size
        if file.size >= self.options.multipart_threshold:
            self._multipart(file, key, sha)
        else:
            with open(file.path, "rb") as body:
                self._call("uploading", key, "put_object", Key=key, Body=body, **_put_args(file.rel, sha))
        stamp = stat_stamp(os.stat(file.path))
        if stamp != file.stamp:
            return "failed", file.rel, "the file changed while it was uploaded; rerun to send the new content", 0
        self._record(file, key, sha)
        logger.debug("uploaded %s (%s)", key, reason)
        return "sent", file.rel, reason, file.size

    def _record(self, file: LocalFile, key: str, sha: str) -> None:
        with self.lock:
            self.index.record_done(file.rel, stamp=file.stamp, sha256=sha, size=file.size, key=key)

    def _multipart(self, file: LocalFile, key: str, sha: str) -> None:
        part_size = part_size_for(file.size, self.options.part_size)
        upload_id, known = self._resumable(file, key, sha, part_size)
        if upload_id is None:
            created = self._call(
                "starting the upload of", key, "create_multipart_upload", Key=key, **_put_args(file.rel, sha)
            )
            upload_id = created["UploadId"]
            with self.lock:
                self.index.record_pending(file.rel, upload_id=upload_id, sha256=sha, part_size=part_size, key=key)
        n_parts = max(1, math.ceil(file.size / part_size))
        fd = os.open(file.path, os.O_RDONLY)
        try:

            def send(number: int) -> dict:
                data = os.pread(fd, part_size, (number - 1) * part_size)
                old = known.get(number)
                if old is not None and old == (hashlib.md5(data).hexdigest(), len(data)):
                    return {"PartNumber": number, "ETag": f'"{old[0]}"'}  # already there from a killed run
                answer = self._call(
                    f"uploading part {number}/{n_parts} of", key, "upload_part",
                    Key=key, UploadId=upload_id, PartNumber=number, Body=data,
                )  # fmt: skip
                return {"PartNumber": number, "ETag": answer["ETag"]}

            parts = list(self.parts.map(send, range(1, n_parts + 1)))
        finally:
            os.close(fd)
        self._call(
            "completing the upload of", key, "complete_multipart_upload",
            Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
        )  # fmt: skip
        with self.lock:
            self.resumed.add(upload_id)

    def _resumable(self, file: LocalFile, key: str, sha: str, part_size: int) -> tuple[str | None, dict]:
        """The in-flight upload of a killed run to continue, and its parts: ``number -> (md5, size)``."""
        pending = self.index.pending.get(file.rel)
        if (
            pending is None
            or pending.get("sha256") != sha
            or pending.get("part_size") != part_size
            or pending.get("key") != key
            or pending.get("upload_id") not in self.inflight.get(key, ())
        ):
            return None, {}
        upload_id = pending["upload_id"]
        known = {}
        marker = 0
        while True:
            page = self._call(
                "listing the parts of", key, "list_parts", Key=key, UploadId=upload_id, PartNumberMarker=marker
            )
            for part in page.get("Parts", []):
                known[part["PartNumber"]] = (part["ETag"].strip('"'), part["Size"])
            if not page.get("IsTruncated"):
                break
            marker = page["NextPartNumberMarker"]
        logger.info("resuming the upload of %s: %d part(s) already there", key, len(known))
        return upload_id, known

    def upload_single(self, file: LocalFile, report: TransferReport) -> None:
        """Upload one file now, in this thread (the manifest)."""
        if quick_action(file, self.target.join(file.rel), self.index.done.get(file.rel)) is not None:
            return
        self.ensure_ready()
        outcome, rel, reason, size = self.handle(file, threading.Event())
        if outcome == "sent":
            report.sent.append(rel)
            report.bytes_sent += size
        elif outcome == "failed":
            report.failed.append((rel, reason))

    def abort_stale(self) -> None:
        """Abort unfinished multipart uploads under the plate's prefix that this run did not complete."""
        if self.client is None:
            return
        for key, upload_ids in self.inflight.items():
            for upload_id in upload_ids:
                if upload_id not in self.resumed:
                    self._call("aborting a stale upload of", key, "abort_multipart_upload", Key=key, UploadId=upload_id)
                    logger.info("aborted an unfinished upload of %s left by an earlier run", key)
        for rel in [rel for rel, e in self.index.pending.items() if e.get("upload_id") not in self.resumed]:
            self.index.forget(rel)


def _put_args(rel: str, sha: str) -> dict:
    content_type = mimetypes.guess_type(rel)[0] or "application/octet-stream"
    return {"Metadata": {SHA_META: sha}, "ContentType": content_type}


def manifest_rows(files: list[LocalFile], index: TransferIndex, target: S3Url, endpoint_url: str | None) -> list[dict]:
    """One manifest row per uploaded file, from what the index recorded."""
    plate = os.path.basename(target.prefix)
    rows = []
    for file in files:
        entry = index.done.get(file.rel)
        if entry is None:
            raise OutputError(f"{file.rel} has no upload record; the manifest needs every file uploaded")
        well, site = well_and_site(file.rel)
        rows.append(
            {
                "s3_url": object_url(target.bucket, entry["key"]),
                "https_url": https_url(endpoint_url, target.bucket, entry["key"]),
                "path": file.rel,
                "size": entry["size"],
                "sha256": entry["sha256"],
                "plate": plate,
                "well": well,
                "site": site,
                "kind": file_kind(file.rel),
            }
        )
    return rows


def _write_and_upload_manifest(folder, files, name, manifest_path, uploader: _Uploader, report) -> str:
    index = uploader.index
    # The manifest depends only on the files and their records: unchanged files, unchanged manifest.
    digest = hashlib.blake2b(digest_size=16)
    for file in files:
        digest.update(f"{file.rel}\0{index.done.get(file.rel, {}).get('sha256')}\0".encode())
    fingerprint = digest.hexdigest()
    path = str(manifest_path) if manifest_path is not None else os.path.join(folder, name)
    url = object_url(uploader.target.bucket, uploader.target.key(name))
    recorded = index.done.get(name)
    if manifest_path is None and index.manifest.get("fingerprint") == fingerprint and recorded is not None:
        try:
            if stat_stamp(os.stat(path)) == recorded.get("stamp"):
                return url  # nothing changed since it was written and uploaded
        except FileNotFoundError:
            pass
    text = io.StringIO()
    writer = csv.DictWriter(text, MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(manifest_rows(files, index, uploader.target, uploader.endpoint_url))
    content = text.getvalue().encode("utf-8")
    try:
        with open(path, "rb") as f:
            unchanged = f.read() == content
    except FileNotFoundError:
        unchanged = False
    if not unchanged:
        atomic_write(path, content)
    st = os.stat(path)
    uploader.upload_single(LocalFile(path, name, st.st_size, stat_stamp(st)), report)
    if not report.failed and index.manifest.get("fingerprint") != fingerprint:
        index.record_manifest(fingerprint=fingerprint)
    return url
