"""Illumination correction: a plate job estimating a flat field per channel (``<plate>_illumination.hdf5``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..base import PlateJob
from ..illumination import (
    BLOCK,
    DEGREE,
    ESTIMATE,
    REESTIMATE_SHARE,
    TRIM,
    block_mean,
    flat_field_from_blocks,
    reestimate_action,
)
from ..io import open_file, read_image
from ..io.stamps import read_key_stamps
from ..log import get_logger
from ..state.stamps import stat_stamp

#: Name of the plate's illumination file in the plate folder.
ILLUMINATION_FILE = "{plate}_illumination.hdf5"  # not *.h5: the per-image jobs must not take it for an image
#: Root attribute of the illumination file: where the fields came from (JSON).
PROVENANCE_ATTR = "batchlib_illumination"


def field_key(channel: str) -> str:
    """The dataset of a channel's field in the illumination file."""
    return f"illumination/{channel}"


def read_provenance(path: str) -> dict | None:
    """The provenance of an illumination file (None if there is no file or no field in it)."""
    if not os.path.exists(path):
        return None
    with open_file(path, "r") as f:
        text = f.attrs.get(PROVENANCE_ATTR)
    return json.loads(text) if text else None


def read_fields(path: str, channels: Sequence[str]) -> dict[str, np.ndarray]:
    """The fields of ``channels`` in an illumination file (float32, mean 1)."""
    with open_file(path, "r") as f:
        return {c: np.asarray(f[field_key(c)][...], np.float32) for c in channels}


def _blocks_of(path: str, channels: list[str]) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Block means of each channel of one container (runs in a worker) and the image shape."""
    with open_file(path, "r") as f:
        images = {c: read_image(f, c) for c in channels}
    shape = next(iter(images.values())).shape
    return {c: block_mean(image) for c, image in images.items()}, shape


def _stamp_of(path: str, channels: list[str]) -> str:
    stamps = read_key_stamps(path, channels, stat_stamp(os.stat(path)))
    return "|".join(str(stamps[c]) for c in channels)


class EstimateIllumination(PlateJob):
    """A flat field per channel, estimated from the plate's images, for the measurements to divide by.

    Writes ``<plate>_illumination.hdf5`` with ``illumination/<channel>``
    (float32, the images' shape, mean 1) and, as the root attribute
    ``batchlib_illumination``, where it came from: the method, the images
    (name and stamp), how many were used, when, and a ``field_id`` (a hash of
    the fields) that :class:`~batchlib.jobs.measure.MeasureObjects` takes as
    a parameter, so a new field remeasures the plate and a kept one does not.

    It runs when the plate's images change, but estimates again only once
    more than ``reestimate_share`` of the images the field came from are new,
    changed or gone (:func:`batchlib.illumination.reestimate_action`); until
    then new images are corrected with the plate's field.

    Parameters
    ----------
    channels : list of str
        Channels to estimate a field for.
    max_images : int
        At most this many images are used, spread evenly over the plate in
        name order (more add little to a smooth field, and cost memory).
    reestimate_share : float
        Share of new, changed or gone images that triggers a new estimate.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("channels", "max_images", "reestimate_share")

    def __init__(
        self,
        channels: Sequence[str],
        max_images: int = 200,
        reestimate_share: float = REESTIMATE_SHARE,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        channels = list(channels)
        super().__init__(
            input_pattern=input_pattern,
            output_name=ILLUMINATION_FILE,
            input_key=channels,
            output_key=[field_key(c) for c in channels],
            identifier=identifier,
        )
        self.channels = channels
        self.max_images = int(max_images)
        self.reestimate_share = float(reestimate_share)

    def run(self, input_files, output_files, **kwargs):
        out, logger = output_files[0], get_logger(self.name)
        paths = sorted(p for p in input_files if os.path.abspath(p) != os.path.abspath(out))
        stamps = self.map_parallel(_stamp_of, [(p, self.channels) for p in paths])
        current = {os.path.basename(p): s for p, s in zip(paths, stamps)}
        previous = read_provenance(out)
        action, why = reestimate_action(previous and previous.get("images"), current, self.reestimate_share)
        logger.info("%s: %s", self.name, why)
        if action != ESTIMATE:
            return
        step = max(1, -(-len(paths) // self.max_images))  # ceil: at most max_images, spread over the plate
        used = paths[::step]
        results = self.map_parallel(_blocks_of, [(p, self.channels) for p in used])
        full = results[0][1]
        fields = {
            c: flat_field_from_blocks([blocks[c] for blocks, shape in results if shape == full], full)
            for c in self.channels
        }
        digest = hashlib.sha256(b"".join(fields[c].tobytes() for c in self.channels)).hexdigest()[:16]
        provenance = {
            "method": f"trimmed mean ({TRIM[0]:g}-{TRIM[1]:g} percentile) of {BLOCK}-pixel blocks, "
            f"robust degree-{DEGREE} polynomial, mean 1",
            "field_id": digest,
            "n_images_used": len(used),
            "images": current,
            "estimated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open_file(out, "a") as f:
            for channel, field in fields.items():
                key = field_key(channel)
                if key in f:
                    del f[key]
                f.create_dataset(key, data=field)
            f.attrs[PROVENANCE_ATTR] = json.dumps(provenance)
