"""Publish plate results to S3 and fetch them back: incremental, checksummed, crash-safe."""

from .download import download_plate
from .location import S3Url, safe_relpath
from .transfer import TransferOptions, TransferReport
from .upload import upload_plate

__all__ = ["S3Url", "download_plate", "TransferOptions", "TransferReport", "safe_relpath", "upload_plate"]
