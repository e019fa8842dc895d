"""S3 locations and object keys, and the rules that keep keys inside a prefix.

Object keys are made only from paths relative to the plate folder, and a
relative path is accepted only if every component is a plain name (no ``..``,
no ``.``, no empty component, no backslash, no control character). The same
check guards downloads: an object key that would land outside the
destination folder is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from ..errors import ConfigError, UnsafePathError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_relpath(path: str, what: str = "path") -> str:
    """Return ``path`` if it is a safe relative path with ``/`` separators, else raise.

    Parameters
    ----------
    path : str
        A path relative to the plate folder (upload) or to the prefix (download).
    what : str
        How to name it in the error message.

    Raises
    ------
    UnsafePathError
        If a component is empty, ``.`` or ``..``, or the path is absolute or
        holds a backslash or a control character.

    Examples
    --------
    >>> safe_relpath("A01.crops/12_mask.png")
    'A01.crops/12_mask.png'
    >>> safe_relpath("../etc/passwd")
    Traceback (most recent call last):
    ...
    batchlib.errors.UnsafePathError: refusing path '../etc/passwd': component '..' would leave the folder; ...
    """
    if not path or path.startswith("/"):
        raise UnsafePathError(f"refusing {what} {path!r}: expected a relative path inside the folder")
    if "\\" in path or _CONTROL.search(path):
        raise UnsafePathError(
            f"refusing {what} {path!r}: backslashes and control characters are not allowed in names; rename the file"
        )
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(
                f"refusing {what} {path!r}: component {part!r} would leave the folder; "
                "only plain names separated by single '/' are allowed"
            )
    return path


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key prefix (no leading or trailing ``/``; may be empty).

    Examples
    --------
    >>> url = S3Url.parse("s3://screens/release-1/")
    >>> url.bucket, url.prefix, url.key("P001", "a.h5"), str(url)
    ('screens', 'release-1', 'release-1/P001/a.h5', 's3://screens/release-1')
    """

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Url:
        """Parse ``s3://bucket/prefix``; a bad URL raises :class:`ConfigError` naming it."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"expected an S3 URL like s3://bucket/prefix, got {url!r}")
        if not _BUCKET.match(parts.netloc):
            raise ConfigError(
                f"bucket name {parts.netloc!r} in {url!r} is not valid: 3-63 lower-case letters, digits, '.' or '-'"
            )
        prefix = parts.path.strip("/")
        if prefix:
            try:
                safe_relpath(prefix, "prefix")
            except UnsafePathError as err:
                raise ConfigError(f"bad prefix in {url!r}: {err}") from err
        return cls(parts.netloc, prefix)

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` (each a safe relative path) under the prefix."""
        for part in parts:
            safe_relpath(part)
        return "/".join(p for p in (self.prefix, *parts) if p)

    def join(self, rel: str) -> str:
        """The key of ``rel``, a path already checked by :func:`safe_relpath` (no check: hot loops)."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def child(self, name: str) -> S3Url:
        """The location one level down, e.g. the plate's own prefix."""
        return S3Url(self.bucket, self.key(name))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def check_endpoint(endpoint_url: str | None) -> str | None:
    """Refuse endpoint URLs that carry credentials (they would end up in logs and the ledger).

    Examples
    --------
    >>> check_endpoint("http://127.0.0.1:8333")
    'http://127.0.0.1:8333'
    """
    if endpoint_url is None:
        return None
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--endpoint-url must look like https://host[:port], got {endpoint_url!r}")
    if parts.username or parts.password:
        raise ConfigError(
            "--endpoint-url must not contain credentials; use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
            "a profile (AWS_PROFILE) or an instance role"
        )
    return endpoint_url.rstrip("/")


def object_url(bucket: str, key: str) -> str:
    """``s3://bucket/key``."""
    return f"s3://{bucket}/{key}"


def https_url(endpoint_url: str | None, bucket: str, key: str) -> str:
    """The public https URL of an object, or ``""`` where there is none (a plain-http endpoint).

    Examples
    --------
    >>> https_url(None, "screens", "r1/P001/a b.h5")
    'https://screens.s3.amazonaws.com/r1/P001/a%20b.h5'
    >>> https_url("http://127.0.0.1:8333", "screens", "a.h5")
    ''
    """
    quoted = quote(key, safe="/")
    if endpoint_url is None:
        return f"https://{bucket}.s3.amazonaws.com/{quoted}"
    if not endpoint_url.startswith("https://"):
        return ""
    return f"{endpoint_url}/{bucket}/{quoted}"
