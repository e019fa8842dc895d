"""The upload step of a workflow: publish the plate's results to S3."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

from ..base import PlateJob
from ..errors import OutputError
from ..s3.location import S3Url, check_endpoint
from ..s3.transfer import MIB, TransferOptions
from ..s3.upload import upload_plate

#: What the upload step sends by default: every kind of output the cell-analysis workflow makes.
DEFAULT_KINDS = ("containers", "plate_table", "profiles", "crops", "qc", "omezarr", "other")


class UploadJob(PlateJob):
    """Upload chosen outputs of the plate to ``<destination>/<plate>/`` and write the manifest.

    The job reruns when anything in the plate folder changed (folders are
    compared by their whole tree); each run sends only new or changed files
    (see :func:`batchlib.s3.upload_plate`). Its output is the manifest
    ``<plate>_manifest.csv``, uploaded beside the data.

    Parameters
    ----------
    destination : str
        ``s3://bucket/prefix``.
    endpoint_url : str, optional
        An S3-compatible server; default AWS. Credentials come only from the
        standard AWS chain (environment, profile, instance role).
    kinds : list of str
        Kinds of output to upload (:data:`batchlib.s3.local.KINDS`).
    include : list of str, optional
        Glob patterns narrowing the files further.
    part_size_mb, multipart_threshold_mb, concurrency, max_attempts
        See :class:`batchlib.s3.TransferOptions`.
    """

    parameter_names: ClassVar[tuple[str, ...]] = (
        "destination",
        "endpoint_url",
        "kinds",
        "include",
        "part_size_mb",
        "multipart_threshold_mb",
        "concurrency",
        "max_attempts",
    )

    def __init__(
        self,
        destination: str,
        endpoint_url: str | None = None,
        kinds: Sequence[str] = DEFAULT_KINDS,
        include: Sequence[str] | None = None,
        part_size_mb: int = 16,
        multipart_threshold_mb: int = 64,
        concurrency: int = 8,
        max_attempts: int = 5,
        identifier: str | None = None,
    ):
        super().__init__(input_pattern="*", output_name="{plate}_manifest.csv", identifier=identifier)
        self.destination = str(S3Url.parse(destination))
        self.endpoint_url = check_endpoint(endpoint_url)
        self.kinds = list(kinds)
        self.include = list(include) if include else None
        self.part_size_mb = part_size_mb
        self.multipart_threshold_mb = multipart_threshold_mb
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.options()  # bad sizes fail when the workflow is built, not at the end

    def options(self) -> TransferOptions:
        """The transfer options of this job."""
        return TransferOptions(
            self.part_size_mb * MIB, self.multipart_threshold_mb * MIB, self.concurrency, self.max_attempts
        )

    def run(self, input_files, output_files, **kwargs):
        manifest = output_files[0]
        report = upload_plate(
            os.path.dirname(manifest),
            self.destination,
            self.endpoint_url,
            include=self.include,
            kinds=self.kinds,
            options=self.options(),
            manifest_path=manifest,
        )
        if not report.ok:
            raise OutputError(report.summary())
