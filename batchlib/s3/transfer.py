"""What uploads and downloads share: options, the report, the thread pool runner."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from ..errors import ConfigError, RemoteAccessError, RemoteError, RemoteUnreachableError

MIB = 2**20
MIN_PART_SIZE = 5 * MIB
#: Object metadata key holding the SHA-256 of the content (``x-amz-meta-batchlib-sha256``).
SHA_META = "batchlib-sha256"

logger = logging.getLogger("Workflow.s3")


@dataclass(frozen=True)
class TransferOptions:
    """How to transfer.

    Parameters
    ----------
    part_size : int
        Bytes per part of a multipart upload or a ranged download; at least
        5 MiB (S3's minimum for every part but the last).
    multipart_threshold : int
        Files of at least this many bytes go multipart.
    concurrency : int
        Files (and parts) sent at the same time.
    max_attempts : int
        Attempts per request (botocore's standard retries, backoff between).
    """

    part_size: int = 16 * MIB
    multipart_threshold: int = 64 * MIB
    concurrency: int = 8
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE:
            raise ConfigError(f"part size must be at least 5 MiB (S3's minimum), got {self.part_size} bytes")
        if self.part_size < 1 or self.multipart_threshold < 1 or self.concurrency < 1 or self.max_attempts < 1:
            raise ConfigError(
                f"part size, multipart threshold, concurrency and attempts must be >= 1, got {self.part_size}, "
                f"{self.multipart_threshold}, {self.concurrency}, {self.max_attempts}"
            )


@dataclass
class TransferReport:
    """What a transfer did, per file (relative path)."""

    direction: str
    location: str
    sent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    planned: list[tuple[str, str, str]] = field(default_factory=list)  # dry run: (action, path, reason)
    bytes_sent: int = 0
    seconds: float = 0.0
    manifest: str | None = None

    @property
    def ok(self) -> bool:
        """True if nothing failed and no file was left out for being unsafe."""
        return not self.failed and not self.excluded

    def summary(self) -> str:
        """One paragraph for the end of the run."""
        verb = "uploaded" if self.direction == "upload" else "downloaded"
        lines = [
            f"{self.direction} {self.location}: {verb} {len(self.sent)} file(s), "
            f"{self.bytes_sent / MIB:.1f} MiB in {self.seconds:.1f} s; {len(self.skipped)} already there; "
            f"{len(self.failed)} failed; {len(self.excluded)} refused"
        ]
        lines += [f"  failed {rel}: {why}" for rel, why in self.failed[:20]]
        lines += [f"  refused {rel}: {why}" for rel, why in self.excluded[:20]]
        if self.manifest:
            lines.append(f"  manifest: {self.manifest}")
        return "\n".join(lines)

    def dry_run_text(self) -> str:
        """The plan of a dry run, one line per file: action, path, why."""
        lines = [f"{action:8} {rel}  ({why})" for action, rel, why in self.planned]
        lines += [f"{'refuse':8} {rel}  ({why})" for rel, why in self.excluded]
        counts = {a: sum(1 for p in self.planned if p[0] == a) for a in sorted({p[0] for p in self.planned})}
        lines.append(f"dry run, nothing transferred: {counts or 'no files'}")
        return "\n".join(lines)


class _NoBar:
    def update(self, n: int) -> None:
        pass


def _progress_bar(desc: str, total_bytes: int):
    """A tqdm bar over bytes, or a bar that shows nothing when there is nothing to show."""
    if total_bytes == 0:
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm  # imported only when needed: a no-op rerun starts faster

    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False)


def transfer_all(
    items: Iterable,
    handle: Callable[[object, threading.Event], tuple[str, str, str, int]],
    threads: int,
    report: TransferReport,
    total_bytes: int,
    progress: bool,
) -> None:
    """Run ``handle(item, stop)`` over ``items`` in threads and fill ``report``.

    ``handle`` returns ``(outcome, rel, reason, bytes)`` with outcome "sent",
    "skipped", "failed" or "planned:<action>". A :class:`RemoteAccessError`
    or :class:`RemoteUnreachableError` stops the remaining work (finished files
    stay recorded) and is raised after the threads finish; any other
    :class:`RemoteError` or ``OSError`` fails only its file.
    """
    stop = threading.Event()
    fatal: list[RemoteError] = []
    started = time.perf_counter()
    with _progress_bar(report.direction, total_bytes if progress else 0) as bar, ThreadPoolExecutor(threads) as pool:
        futures = {pool.submit(handle, item, stop): item for item in items}
        for future in as_completed(futures):
            try:
                outcome, rel, reason, size = future.result()
            except (RemoteAccessError, RemoteUnreachableError) as err:
                stop.set()
                fatal.append(err)
                continue
            except (RemoteError, OSError) as err:
                report.failed.append((getattr(futures[future], "rel", str(futures[future])), str(err)))
                continue
            if outcome == "sent":
                report.sent.append(rel)
                report.bytes_sent += size
            elif outcome == "skipped":
                report.skipped.append((rel, reason))
            elif outcome.startswith("planned:"):
                report.planned.append((outcome.split(":", 1)[1], rel, reason))
            elif outcome == "failed":
                report.failed.append((rel, reason))
            bar.update(size)
    report.seconds = time.perf_counter() - started
    report.sent.sort()
    report.skipped.sort()
    report.failed.sort()
    report.planned.sort(key=lambda p: p[1])
    if fatal:
        logger.error("%s", fatal[0])
        raise fatal[0]
