"""Single-cell crops: a PNG per cell and channel plus its mask, and a metadata CSV per image."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..base import BatchJob
from ..io import open_file, read_image
from ..measure import ObjectPixels
from ..plate import compile_scheme, parse_image_name, plate_of

METADATA_COLUMNS = [
    "plate",
    "well",
    "site",
    "label",
    "centroid_y",
    "centroid_x",
    "bbox_min_y",
    "bbox_min_x",
    "bbox_max_y",
    "bbox_max_x",
    "touches_border",
    "mask_file",
]


def crop_windows(centers: np.ndarray, size: int) -> np.ndarray:
    """Top-left corners of ``size`` x ``size`` windows centred on ``centers`` (rows of y, x).

    Examples
    --------
    >>> crop_windows(np.array([[10.4, 3.6]]), 8).tolist()
    [[6, 0]]
    """
    return (np.round(centers).astype(np.int64) - size // 2).reshape(-1, 2)


def cut(image: np.ndarray, corner: Sequence[int], size: int) -> np.ndarray:
    """A ``size`` x ``size`` window of ``image`` at ``corner``, zero-padded outside the image.

    Examples
    --------
    >>> cut(np.arange(9).reshape(3, 3), (-1, 1), 2).tolist()
    [[0, 0], [1, 2]]
    """
    out = np.zeros((size, size), dtype=image.dtype)
    y0, x0 = corner
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, image.shape[0]), min(x0 + size, image.shape[1])
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
    return out


def write_png(path: str, array: np.ndarray) -> None:
    """8- or 16-bit grayscale PNG (other dtypes are scaled into 16 bits; NaN and infinite pixels become 0)."""
    from PIL import Image

    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype not in (np.uint8, np.uint16):
        finite = np.isfinite(array)
        values = array[finite]
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        scaled = np.where(finite, (array - lo) / (hi - lo or 1) * 65535, 0)
        array = np.clip(scaled, 0, 65535).astype(np.uint16)
    Image.fromarray(array).save(path)


class CropCells(BatchJob):
    """For each cell, a fixed-size crop centred on it of the chosen channels plus its mask, as PNG.

    Each image gets a folder ``<image>.crops/`` with ``<label>_<channel>.png``,
    ``<label>_mask.png`` and ``metadata.csv`` (plate, well, site, label,
    centroid, bounding box, whether the cell touches the image border, file
    names): the layout single-cell models are trained on. The folder is
    written whole and renamed, so it is never half-written.

    Parameters
    ----------
    channels : list of str
        Image channels to crop.
    cell_key : str
        The cell segmentation.
    size : int
        Crop width and height in pixels.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("channels", "cell_key", "size", "scheme", "input_keys")

    def __init__(
        self,
        channels: Sequence[str],
        cell_key: str = "cell_segmentation",
        size: int = 64,
        scheme: str = "batchlib",
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        super().__init__(input_pattern=input_pattern, output_ext=".crops", identifier=identifier)
        self.channels = list(channels)
        self.cell_key = cell_key
        self.size = int(size)
        self.scheme = scheme
        self.input_keys = (cell_key, *self.channels)

    def run(self, input_files, output_files, **kwargs):
        regex = compile_scheme(self.scheme)
        for inp, out in zip(input_files, output_files):
            with open_file(inp, "r") as f:
                cells = read_image(f, self.cell_key)
                images = {c: read_image(f, c) for c in self.channels}
            name = parse_image_name(os.path.basename(inp), regex)
            plate = plate_of(inp)
            os.makedirs(out)
            pixels = ObjectPixels(cells)
            rows, cols = np.divmod(pixels.index, cells.shape[1])
            centers = (
                np.stack([pixels.reduce(np.add, rows.astype(float)), pixels.reduce(np.add, cols.astype(float))], 1)
                / pixels.counts[:, None]
            )
            bbox = np.stack(
                [
                    pixels.reduce(np.minimum, rows),
                    pixels.reduce(np.minimum, cols),
                    pixels.reduce(np.maximum, rows) + 1,
                    pixels.reduce(np.maximum, cols) + 1,
                ],
                1,
            )
            corners = crop_windows(centers, self.size)
            touches = (
                (bbox[:, 0] == 0) | (bbox[:, 1] == 0) | (bbox[:, 2] == cells.shape[0]) | (bbox[:, 3] == cells.shape[1])
            )
            records = []
            for i, label in enumerate(pixels.ids):
                mask_file = f"{label}_mask.png"
                write_png(os.path.join(out, mask_file), cut(cells, corners[i], self.size) == label)
                files = {}
                for channel, image in images.items():
                    files[f"{channel}_file"] = f"{label}_{channel}.png"
                    write_png(os.path.join(out, files[f"{channel}_file"]), cut(image, corners[i], self.size))
                records.append(
                    [
                        plate,
                        name.well.name,
                        name.site,
                        int(label),
                        *np.round(centers[i], 3),
                        *bbox[i].tolist(),
                        int(touches[i]),
                        mask_file,
                        *files.values(),
                    ]
                )
            with open(os.path.join(out, "metadata.csv"), "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(METADATA_COLUMNS + [f"{c}_file" for c in self.channels])
                writer.writerows(records)
