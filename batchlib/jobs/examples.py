"""Two small example jobs: per-image channel statistics, and a plate CSV of them.

They show the whole of writing a job: a per-file job (TIFF -> JSON) and a
plate-level job (all JSON -> one CSV). ``workflows/custom_job_example.py``
runs them.
"""

from __future__ import annotations

import csv
import json
import os

import tifffile

from ..base import BatchJob, PlateJob


class ChannelStatistics(BatchJob):
    """Mean, min and max of every channel of a TIFF, written as JSON."""

    def __init__(self, input_pattern: str = "*.tiff", **kwargs):
        super().__init__(input_pattern=input_pattern, output_ext=".stats.json", **kwargs)

    def validate_input(self, path: str) -> str | None:
        try:
            with tifffile.TiffFile(path) as tif:
                tif.series[0].shape  # noqa: B018 - reading the header is the check
        except Exception as err:
            return f"{os.path.basename(path)} is not a readable TIFF: {err}"
        return None

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            image = tifffile.imread(inp)
            channels = image.reshape(-1, *image.shape[-2:])
            stats = [{"mean": float(c.mean()), "min": int(c.min()), "max": int(c.max())} for c in channels]
            with open(out, "w") as f:
                json.dump({"image": os.path.basename(inp), "channels": stats}, f)


class StatisticsTable(PlateJob):
    """One CSV row per image with the channel means, from the JSON files."""

    def __init__(self, output_name: str = "channel_statistics.csv", **kwargs):
        super().__init__(input_pattern="*.stats.json", output_name=output_name, **kwargs)

    def run(self, input_files, output_files, **kwargs):
        rows = []
        for path in sorted(input_files):
            with open(path) as f:
                stats = json.load(f)
            rows.append([stats["image"], *(c["mean"] for c in stats["channels"])])
        n_channels = max((len(r) - 1 for r in rows), default=0)
        with open(output_files[0], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", *(f"mean_channel{i}" for i in range(n_channels))])
            writer.writerows(rows)
