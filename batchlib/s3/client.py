"""The boto3 client batchlib uses, and S3 errors turned into clear batchlib errors.

Credentials come only from the standard AWS chain (environment variables,
``AWS_PROFILE`` / shared files, instance roles): batchlib has no option for
them and never writes them anywhere. Retries with exponential backoff on
throttling, 5xx answers and connection errors are botocore's "standard"
retry mode.
"""

from __future__ import annotations

from typing import Any

from ..errors import RemoteAccessError, RemoteError, RemoteUnreachableError
from .location import object_url

#: Error codes that mean the credentials themselves were refused.
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_NO_BUCKET = {"NoSuchBucket"}


def make_client(
    endpoint_url: str | None = None,
    max_attempts: int = 5,
    max_connections: int = 16,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
) -> Any:
    """A boto3 S3 client with retries, timeouts and a connection pool.

    Parameters
    ----------
    endpoint_url : str, optional
        An S3-compatible server (path-style addressing); default AWS.
    max_attempts : int
        Attempts per request, the first included (backoff between them).
    max_connections : int
        Size of the connection pool (at least the number of threads using it).
    connect_timeout, read_timeout : float
        Seconds.
    """
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=max_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        # batchlib checks content with its own SHA-256; botocore's extra checksums cost ~12% CPU.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    region = session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def remote_error(
    err: Exception, action: str, bucket: str, key: str = "", endpoint_url: str | None = None
) -> RemoteError:
    """Turn a botocore exception into a :class:`RemoteError` that says what to do.

    Access problems (missing bucket, absent, rejected or insufficient
    credentials) become :class:`RemoteAccessError`: rerunning will not help.
    """
    from botocore import exceptions as bex

    where = object_url(bucket, key) if key else f"bucket {bucket!r}"
    server = endpoint_url or "AWS S3"
    if isinstance(err, (bex.NoCredentialsError, bex.PartialCredentialsError)):
        return RemoteAccessError(
            f"no AWS credentials found for {action} {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE, or run where an instance role provides them (batchlib never reads them from config files)"
        )
    if isinstance(err, (bex.EndpointConnectionError, bex.ConnectionClosedError, bex.ConnectTimeoutError,
                        bex.ReadTimeoutError, bex.ConnectionError)):  # fmt: skip
        return RemoteUnreachableError(
            f"cannot reach {server} while {action} {where} (retried with backoff): {err}. "
            "Check --endpoint-url and the network, then rerun: finished files are not sent again"
        )
    if isinstance(err, bex.ClientError):
        info = err.response.get("Error", {})
        code = str(info.get("Code", ""))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = info.get("Message", "")
        if code in _NO_BUCKET or (code in ("404", "NotFound") and not key):
            return RemoteAccessError(
                f"bucket {bucket!r} does not exist on {server}: create it first or check the bucket name "
                "(batchlib does not create buckets)"
            )
        if code in _BAD_CREDENTIALS:
            return RemoteAccessError(
                f"{server} rejected the credentials ({code}) for {action} {where}: check AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            )
        if code in _DENIED or status == 403:
            return RemoteAccessError(
                f"access denied ({code or status}) for {action} {where}: the credentials lack the permission "
                "(s3:ListBucket, s3:GetObject, s3:PutObject, s3:AbortMultipartUpload) or are wrong"
            )
        return RemoteError(f"{server} answered {code or status} ({message}) for {action} {where}")
    if isinstance(err, bex.BotoCoreError):
        return RemoteError(f"S3 request failed for {action} {where}: {err}")
    raise err


def call(client: Any, method: str, action: str, bucket: str, key: str = "", endpoint_url: str | None = None, **kwargs):
    """``client.<method>(Bucket=bucket, **kwargs)``; a botocore error becomes a :func:`remote_error`.

    ``action`` and ``key`` only word the message ("uploading", "s3://bucket/key").
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, method)(Bucket=bucket, **kwargs)
    except (ClientError, BotoCoreError) as err:
        raise remote_error(err, action, bucket, key, endpoint_url) from None


def check_bucket(client: Any, bucket: str, endpoint_url: str | None = None) -> None:
    """Raise :class:`RemoteAccessError` if ``bucket`` is missing or not reachable with these credentials."""
    call(client, "head_bucket", "checking", bucket, endpoint_url=endpoint_url)


def list_objects(client: Any, bucket: str, prefix: str, endpoint_url: str | None = None) -> dict[str, dict]:
    """Every object under ``prefix/``: ``key -> {"size", "etag"}``."""
    from botocore.exceptions import BotoCoreError, ClientError

    objects = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                objects[item["Key"]] = {"size": item["Size"], "etag": item["ETag"].strip('"')}
    except (ClientError, BotoCoreError) as err:
        raise remote_error(err, "listing", bucket, prefix + "/", endpoint_url) from None
    return objects


def list_multipart_uploads(client: Any, bucket: str, prefix: str, endpoint_url: str | None = None) -> dict[str, list]:
    """Multipart uploads in flight under ``prefix/``: ``key -> [upload ids]``."""
    from botocore.exceptions import BotoCoreError, ClientError

    uploads: dict[str, list] = {}
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for item in page.get("Uploads", []):
                uploads.setdefault(item["Key"], []).append(item["UploadId"])
    except (ClientError, BotoCoreError) as err:
        raise remote_error(err, "listing multipart uploads in", bucket, prefix + "/", endpoint_url) from None
    return uploads
