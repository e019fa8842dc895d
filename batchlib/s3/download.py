"""Download a released plate (or parts of it) from S3 into a local folder.

Every object under ``s3://bucket/prefix/`` lands at the same relative path
in the destination, if that path is safe (see
:func:`batchlib.s3.location.safe_relpath`) and stays inside the destination
even through symbolic links. Each file is written to a partial file beside
its target, verified against the SHA-256 in the object's metadata (or, for an
object without one that was not uploaded in parts, against its ETag, the
MD5), and only then renamed into place; a partial file left by a killed run
is continued with a ranged request if the object has not changed. A rerun
fetches only objects that are new or changed (a transfer index remembers
what was fetched), and a local file that already has the object's content
is not fetched at all.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import RemoteError, UnsafePathError
from ..state import BOOKKEEPING_FOLDER
from ..state.atomic import TMP_PREFIX, replace
from ..state.stamps import stat_stamp
from .client import call, check_bucket, list_objects, make_client
from .index import TransferIndex, index_path
from .local import PART_PREFIX, selected, sha256_file
from .location import S3Url, check_endpoint, safe_relpath
from .transfer import SHA_META, TransferOptions, TransferReport, logger, transfer_all

FETCH, SKIP = "download", "skip"
_READ_BLOCK = 2**20


def download_action(remote_etag: str, indexed: dict | None, local_stamp: str | None) -> tuple[str, str] | None:
    """Decide without reading the local file, if possible.

    Returns ``(SKIP, reason)`` if the local file is the one fetched last time
    and the object has not changed since, ``(FETCH, reason)`` if there is no
    local file, else None (compare checksums).

    Examples
    --------
    >>> download_action("e1", {"etag": "e1", "stamp": "5:1"}, "5:1")
    ('skip', 'unchanged since downloaded')
    >>> download_action("e1", None, None)
    ('download', 'new: not here')
    >>> download_action("e2", {"etag": "e1", "stamp": "5:1"}, "5:1") is None
    True
    """
    if local_stamp is None:
        return FETCH, "new: not here"
    if indexed is not None and indexed.get("etag") == remote_etag and indexed.get("stamp") == local_stamp:
        return SKIP, "unchanged since downloaded"
    return None


def local_target(dest: str, rel: str) -> str:
    """Where object path ``rel`` goes under ``dest``; raises if it would leave ``dest``.

    Examples
    --------
    >>> local_target("/data/P1", "a.crops/1.png")
    '/data/P1/a.crops/1.png'
    """
    safe_relpath(rel, "object path")
    path = os.path.join(dest, *rel.split("/"))
    real_dest = os.path.realpath(dest)
    parent = os.path.realpath(os.path.dirname(path))
    if os.path.commonpath([parent, real_dest]) != real_dest:
        raise UnsafePathError(f"refusing object path {rel!r}: its folder leads outside {dest} (a symbolic link?)")
    return path


def download_plate(
    source: str | S3Url,
    dest: str | os.PathLike,
    endpoint_url: str | None = None,
    include: Sequence[str] | None = None,
    options: TransferOptions | None = None,
    dry_run: bool = False,
    progress: bool = True,
    client: Any = None,
) -> TransferReport:
    """Fetch every object under ``source`` into folder ``dest``.

    Parameters
    ----------
    source : str or S3Url
        ``s3://bucket/prefix/<plate>``.
    dest : path-like
        The local plate folder (created if missing).
    endpoint_url : str, optional
        An S3-compatible server; default AWS.
    include : list of str, optional
        Glob patterns over the paths below the prefix (``*.h5``, ``P1_qc``).
    options : TransferOptions, optional
        Part size (ranged reads), concurrency, retries.
    dry_run : bool
        Only say what would be fetched and why.
    progress : bool
        Show a progress bar.
    client : optional
        A boto3 S3 client to use instead of making one.

    Returns
    -------
    TransferReport
    """
    options = options or TransferOptions()
    endpoint_url = check_endpoint(endpoint_url)
    source = S3Url.parse(source) if isinstance(source, str) else source
    dest = os.path.abspath(dest)
    report = TransferReport("download", str(source))
    client = client or make_client(endpoint_url, options.max_attempts, options.concurrency + 2)
    check_bucket(client, source.bucket, endpoint_url)
    objects = list_objects(client, source.bucket, source.prefix, endpoint_url)
    index = TransferIndex(
        index_path(os.path.join(dest, BOOKKEEPING_FOLDER), "download", endpoint_url, str(source)), str(source)
    )
    fetcher = _Fetcher(client, source, dest, index, endpoint_url, options, dry_run)
    todo = []
    for key, info in sorted(objects.items()):
        rel = key[len(source.prefix) + 1 :] if source.prefix else key
        if include and not selected(rel, include):
            continue
        if rel.split("/", 1)[0] == BOOKKEEPING_FOLDER or os.path.basename(rel).startswith((PART_PREFIX, TMP_PREFIX)):
            report.excluded.append((rel, "batchlib's bookkeeping and temporary names are never downloaded"))
            continue
        try:
            path = local_target(dest, rel)
        except UnsafePathError as err:
            report.excluded.append((rel, str(err)))
            continue
        todo.append((rel, key, path, info))
    try:
        transfer_all(todo, fetcher.handle, options.concurrency, report, sum(t[3]["size"] for t in todo), progress)
    finally:
        if not dry_run:
            index.compact()
    if not dry_run:
        logger.info("%s", report.summary())
    return report


class _Fetcher:
    """The doing of a download: one object at a time, from many threads."""

    def __init__(self, client, source, dest, index, endpoint_url, options, dry_run):
        self.client = client
        self.source: S3Url = source
        self.dest = dest
        self.index: TransferIndex = index
        self.endpoint_url = endpoint_url
        self.options: TransferOptions = options
        self.dry_run = dry_run
        self.lock = threading.Lock()

    def _call(self, action: str, key: str, method: str, **kwargs):
        return call(self.client, method, action, self.source.bucket, key, self.endpoint_url, Key=key, **kwargs)

    def handle(self, item: tuple, stop: threading.Event) -> tuple[str, str, str, int]:
        rel, key, path, info = item
        if stop.is_set():
            return "failed", rel, "not attempted: the download stopped", 0
        try:
            local_stamp = stat_stamp(os.stat(path))
        except FileNotFoundError:
            local_stamp = None
        decision = download_action(info["etag"], self.index.done.get(rel), local_stamp)
        if decision is not None and decision[0] == SKIP:
            return ("planned:" + SKIP if self.dry_run else "skipped"), rel, decision[1], info["size"]
        sha = self._call("checking", key, "head_object").get("Metadata", {}).get(SHA_META)
        if decision is None:
            same = sha is not None and sha256_file(path) == sha
            decision = (SKIP, "already here with the same checksum") if same else (FETCH, "changed: checksum differs")
        action, reason = decision
        if self.dry_run:
            return f"planned:{action}", rel, reason, info["size"]
        if action == SKIP:
            self._record(rel, key, path, info, sha)
            return "skipped", rel, reason, info["size"]
        self._fetch(key, path, info, sha)
        self._record(rel, key, path, info, sha)
        return "sent", rel, reason, info["size"]

    def _record(self, rel, key, path, info, sha) -> None:
        stamp = stat_stamp(os.stat(path))
        with self.lock:
            self.index.record_done(rel, stamp=stamp, etag=info["etag"], sha256=sha, size=info["size"], key=key)

    def _fetch(self, key: str, path: str, info: dict, sha: str | None) -> None:
        """Fetch into a partial file (continuing one left by a killed run), verify, rename."""
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        tag = hashlib.sha1(info["etag"].encode()).hexdigest()[:12]  # a changed object never continues a stale part
        partial = os.path.join(folder, f"{PART_PREFIX}{tag}-{name}")
        for stale in os.listdir(folder):
            if stale.startswith(PART_PREFIX) and stale.endswith(f"-{name}") and stale != os.path.basename(partial):
                os.remove(os.path.join(folder, stale))
        have = os.path.getsize(partial) if os.path.exists(partial) else 0
        if have > info["size"]:
            os.remove(partial)
            have = 0
        part = self.options.part_size
        with open(partial, "ab") as out:
            while have < info["size"]:
                end = min(have + part, info["size"]) - 1
                answer = self._call("downloading", key, "get_object", Range=f"bytes={have}-{end}", IfMatch=info["etag"])
                body = answer["Body"]
                while block := body.read(_READ_BLOCK):
                    out.write(block)
                    have += len(block)
                out.flush()
            os.fsync(out.fileno())
        self._verify(key, partial, info, sha)
        replace(partial, path)

    def _verify(self, key: str, partial: str, info: dict, sha: str | None) -> None:
        if sha is not None:
            found, expected, what = sha256_file(partial), sha, "SHA-256"
        elif "-" not in info["etag"]:
            digest = hashlib.md5()
            with open(partial, "rb") as f:
                while block := f.read(8 * _READ_BLOCK):
                    digest.update(block)
            found, expected, what = digest.hexdigest(), info["etag"], "MD5 (ETag)"
        else:
            logger.warning(
                "s3://%s/%s has no checksum to verify against (uploaded without batchlib)", self.source.bucket, key
            )
            return
        if found != expected:
            os.remove(partial)
            raise RemoteError(
                f"s3://{self.source.bucket}/{key}: the downloaded content's {what} is {found}, the object's is "
                f"{expected}; the partial file was removed, rerun to fetch it again"
            )
