"""Segmentation jobs: nuclei with StarDist or a classical method, cells by seeded watershed."""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from ..base import BatchJobOnContainer
from ..errors import ConfigError, InvalidInputError
from ..io import open_file, read_image, read_image_later, write_image
from ..io.images import PIXEL_SIZE_ATTR, finite_pixels
from ..io.threads import run_behind
from ..nucleus_size import DIAMETER_ATTR, SCALE_ATTR, estimate_diameter, rescale_factor
from ..saturation import tame_saturation
from .stardist_model import (
    MODEL_INFO,
    SHIPPED_MODEL,
    auto_tiles,
    load_stardist,
    model_fingerprint,
    prepare_for_model,
    recorded_diameter,
)


def fill_nonfinite(image: np.ndarray) -> np.ndarray:
    """``image`` with NaN and infinite pixels set to its lowest finite value (background), as float32 if needed.

    Examples
    --------
    >>> fill_nonfinite(np.array([3.0, np.nan, 5.0, -np.inf])).tolist()
    [3.0, 3.0, 5.0, 3.0]
    """
    finite = finite_pixels(image)
    if finite is image:
        return image
    return np.where(np.isfinite(image), image, finite.min() if finite.size else 0).astype(image.dtype)


def _import_image_tools() -> None:
    """Import the scikit-image and SciPy parts the threshold and cell segmentations use."""
    from scipy import ndimage  # noqa: F401
    from skimage.feature import peak_local_max  # noqa: F401
    from skimage.filters import gaussian, threshold_otsu  # noqa: F401
    from skimage.segmentation import watershed  # noqa: F401


class NucleusSize:
    """How a segment job knows the nucleus diameter of an image: given, or estimated from its pixels.

    Parameters
    ----------
    diameter : float, optional
        The nucleus diameter in pixels, for every image.
    diameter_um : float, optional
        The nucleus diameter in micrometres; needs the pixel size (``pixel_size_um``,
        or the container's root attribute ``pixel_size_um``).
    pixel_size_um : float, optional
        Micrometres per pixel, when the containers do not say.

    With neither diameter, each image's is estimated
    (:func:`batchlib.nucleus_size.estimate_diameter`).
    """

    def __init__(self, diameter: float | None, diameter_um: float | None, pixel_size_um: float | None):
        for name, value in (("nucleus_diameter", diameter), ("nucleus_diameter_um", diameter_um)):
            if value is not None and not value > 0:
                raise ConfigError(f"{name} (--{name.replace('_', '-')}) must be > 0 pixels, got {value}")
        if diameter is not None and diameter_um is not None:
            raise ConfigError("give nucleus_diameter (pixels) or nucleus_diameter_um, not both")
        self.diameter, self.diameter_um, self.pixel_size_um = diameter, diameter_um, pixel_size_um

    def of(self, image: np.ndarray, path: str, attrs) -> float:
        """The nucleus diameter (pixels) of ``image``, from container ``path`` with root attributes ``attrs``."""
        if self.diameter is not None:
            return float(self.diameter)
        if self.diameter_um is not None:
            pixel_size = self.pixel_size_um or attrs.get(PIXEL_SIZE_ATTR)
            if not pixel_size:
                raise InvalidInputError(
                    f"{os.path.basename(path)}: nucleus_diameter_um needs the pixel size, and the container has no "
                    f"{PIXEL_SIZE_ATTR} attribute; give pixel_size_um (--pixel-size-um) or nucleus_diameter in pixels",
                    recheck=True,
                )
            return float(self.diameter_um) / float(pixel_size)
        return estimate_diameter(image)


class SegmentNucleiStarDist(BatchJobOnContainer):
    """Nuclei instance segmentation with StarDist, at the nucleus size the model was trained for.

    Each image is rescaled so that its nuclei have the diameter the model
    was trained on (recorded in the model folder, :data:`MODEL_INFO`),
    predicted (in tiles if large), and its labels returned on the image's own
    pixel grid. The diameter is estimated per image
    (:func:`batchlib.nucleus_size.estimate_diameter`) unless given. The
    diameter and the factor used are written as the container's root
    attributes ``batchlib_nucleus_diameter`` and ``batchlib_segmentation_scale``
    (columns of the image table).

    Parameters
    ----------
    input_key : str
        The nuclei channel.
    output_key : str
        The label image to write (uint32, ids 1..n).
    model : str, optional
        None for the model shipped with batchlib, a folder with a StarDist
        model, or a registered name for ``StarDist2D.from_pretrained`` (needs
        internet).
    prob_thresh, nms_thresh : float, optional
        Override the model's thresholds.
    tile_size : int
        Rescaled images larger than this (per axis) are predicted in tiles.
    nucleus_diameter : float, optional
        Nucleus diameter in pixels for every image, instead of the estimate.
    nucleus_diameter_um, pixel_size_um : float, optional
        The diameter in micrometres (see :class:`NucleusSize`).
    model_diameter : float, optional
        The nucleus diameter (pixels) the model works best at, for a model
        that does not record it. Without either, images are not rescaled
        (registered pretrained models record none; a warning says so).
    gpu : bool
        Let TensorFlow use a GPU; by default the job runs on the CPU.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("model", "prob_thresh", "nms_thresh", "tile_size")
    # 2: a saturated plateau is lowered before intensities are scaled (debris); 3: a few far brighter nuclei
    # do not set the intensity scale (batchlib.brightness)
    version = "3"

    batch_size = 16

    def __init__(
        self,
        input_key: str = "nuclei",
        output_key: str = "nucleus_segmentation",
        model: str | None = None,
        prob_thresh: float | None = None,
        nms_thresh: float | None = None,
        tile_size: int = 1024,
        nucleus_diameter: float | None = None,
        nucleus_diameter_um: float | None = None,
        pixel_size_um: float | None = None,
        model_diameter: float | None = None,
        gpu: bool = False,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        super().__init__(input_pattern=input_pattern, input_key=input_key, output_key=output_key, identifier=identifier)
        self.model = os.fspath(model) if model is not None else None
        self.prob_thresh = prob_thresh
        self.nms_thresh = nms_thresh
        self.tile_size = int(tile_size)
        self._size = NucleusSize(nucleus_diameter, nucleus_diameter_um, pixel_size_um)
        self._gpu = bool(gpu)
        folder = SHIPPED_MODEL if model is None else self.model
        if model is None and not os.path.isdir(SHIPPED_MODEL):
            raise ConfigError(
                f"the shipped nuclei model is missing at {SHIPPED_MODEL}; "
                "train it with scripts/train_nuclei_model.py or pass model="
            )
        self._model_id = model_fingerprint(folder) if os.path.isdir(folder) else str(model)
        if model_diameter is not None and not model_diameter > 0:
            raise ConfigError(f"model_diameter (--model-diameter) must be > 0 pixels, got {model_diameter}")
        self._model_diameter = model_diameter or (recorded_diameter(self.model) if os.path.isdir(folder) else None)
        if self._model_diameter is None:
            logging.getLogger("Workflow.SegmentNucleiStarDist").warning(
                "model %s records no nucleus diameter (%s): images are segmented at their own scale; "
                "give model_diameter (--model-diameter) to rescale them",
                self.model,
                MODEL_INFO,
            )

    def parameters(self) -> dict:
        # The model's files count (retraining reruns); the device does not.
        return {
            "input_keys": self.input_keys,
            "output_keys": self.output_keys,
            "model": self._model_id,
            "prob_thresh": self.prob_thresh,
            "nms_thresh": self.nms_thresh,
            "tile_size": self.tile_size,
            "nucleus_diameter": vars(self._size),
            "model_diameter": self._model_diameter,
        }

    def load_model(self):
        return load_stardist(self.model, self._gpu)

    def warm_up(self) -> None:
        super().warm_up()
        self.worker_resource("stardist", self.load_model)  # TensorFlow and the model: seconds, once

    def predict(self, image: np.ndarray, diameter: float = float("nan")) -> tuple[np.ndarray, float]:
        """Labels for one image with nuclei of ``diameter`` pixels (NaN: unknown), and the factor used.

        The labels are on the image's own pixel grid, ids 1..n.
        """
        prepared, scale = self._prepare(image, diameter)
        return self._predict_prepared(prepared, scale), scale

    def _prepare(self, image: np.ndarray, diameter: float) -> tuple[np.ndarray, float]:
        """The model's input for ``image`` (:func:`prepare_for_model`) and the factor it is rescaled by."""
        scale = rescale_factor(diameter, self._model_diameter)
        return prepare_for_model(image, scale, diameter), scale

    def _predict_prepared(self, prepared: np.ndarray, scale: float) -> np.ndarray:
        """Labels (uint32) for an image already through :func:`prepare_for_model` with ``scale``."""
        model = self.worker_resource("stardist", self.load_model)
        labels, _ = model.predict_instances(
            prepared,
            prob_thresh=self.prob_thresh,
            nms_thresh=self.nms_thresh,
            scale=None if scale == 1 else scale,
            n_tiles=auto_tiles(tuple(math.ceil(n * scale) for n in prepared.shape), self.tile_size),
            show_tile_progress=False,
        )
        return labels.astype(np.uint32)

    def run(self, input_files, output_files, **kwargs):
        # One I/O thread reads the batch's images, estimates their nucleus size and prepares them for the model
        # (normalized, smoothed before shrinking), and writes their labels, while the model predicts (TensorFlow,
        # numpy and the (de)compression release the GIL). It runs behind the model (lower priority): on a busy
        # core it would stall TensorFlow's parallel operations.
        with ThreadPoolExecutor(1, thread_name_prefix="batchlib-stardist-io", initializer=run_behind) as io:
            prepared = io.map(self._read, input_files)
            writes = []
            for (ready, diameter, scale), out in zip(prepared, output_files):
                labels = self._predict_prepared(ready, scale)
                writes.append(io.submit(self._write, out, labels, diameter, scale))
            for write in writes:
                write.result()

    def _read(self, path: str) -> tuple[np.ndarray, float, float]:
        """The image of ``path`` prepared for the model, its nucleus diameter and the factor it is rescaled by."""
        with open_file(path, "r") as f:
            image = read_image(f, self.input_key)
            attrs = dict(f.attrs)
        diameter = self._size.of(image, path, attrs)
        prepared, scale = self._prepare(image, diameter)
        return prepared, diameter, scale

    def _write(self, path: str, labels: np.ndarray, diameter: float, scale: float) -> None:
        with open_file(path, "a") as f:
            write_image(f, self.output_key, labels, is_label=True, visible=False)
            f.attrs[DIAMETER_ATTR] = float(diameter)
            f.attrs[SCALE_ATTR] = float(scale)


def threshold_nuclei(image: np.ndarray, sigma: float = 1.5, min_size: int = 20, min_distance: int = 4) -> np.ndarray:
    """Classical nuclei segmentation: Otsu threshold, distance transform, watershed.

    Examples
    --------
    >>> img = np.zeros((40, 40)); img[5:15, 5:15] = 100; img[20:35, 20:35] = 100
    >>> labels = threshold_nuclei(img, min_distance=3)
    >>> int(labels.max()), labels.dtype.name
    (2, 'uint32')
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    # Saturated debris would take Otsu's threshold for itself: its plateau is lowered first.
    smooth = gaussian(tame_saturation(fill_nonfinite(image)).astype(np.float32), sigma=sigma, preserve_range=True)
    if smooth.max() == smooth.min():
        return np.zeros(image.shape, np.uint32)
    mask = _remove_small(smooth > threshold_otsu(smooth), min_size)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=ndi.label(mask)[0], exclude_border=False)
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    return labels.astype(np.uint32)


def _remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


#: The nucleus diameter (pixels) the classical method's defaults are made for.
THRESHOLD_DIAMETER = 16.0


def threshold_settings(diameter: float) -> tuple[float, int, int]:
    """Smoothing sigma, smallest object size and seed distance for nuclei of ``diameter`` pixels.

    Lengths scale with the diameter, the size with its square, from settings
    for nuclei of :data:`THRESHOLD_DIAMETER` pixels (1.2, 20, 5; chosen on
    the two real labelled sets at scales 0.5 to 3, see BENCHMARKS.md), with
    floors so that small nuclei are not cut into pixels. An unknown diameter
    (NaN) gives the settings for :data:`THRESHOLD_DIAMETER`.

    Examples
    --------
    >>> threshold_settings(16.0), threshold_settings(48.0), threshold_settings(6.0)
    ((1.2, 20, 5), (3.6, 180, 15), (1.0, 3, 3))
    """
    ratio = diameter / THRESHOLD_DIAMETER if math.isfinite(diameter) and diameter > 0 else 1.0
    return round(max(1.0, 1.2 * ratio), 6), max(3, round(20 * ratio**2)), max(3, round(5 * ratio))


class SegmentNucleiThreshold(BatchJobOnContainer):
    """Nuclei without a model: smoothing, Otsu threshold and a distance-transform watershed.

    The smoothing, the smallest nucleus and the distance between seeds follow
    each image's nucleus diameter (:func:`threshold_settings`), estimated or
    given, unless set here. The diameter is written as the container's root
    attribute ``batchlib_nucleus_diameter``, the factor it implies over
    :data:`THRESHOLD_DIAMETER` as ``batchlib_segmentation_scale``.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("sigma", "min_size", "min_distance", "nucleus_diameter")
    version = "2"  # 2: a saturated plateau is lowered before intensities are scaled (debris)

    def __init__(
        self,
        input_key: str = "nuclei",
        output_key: str = "nucleus_segmentation",
        sigma: float | None = None,
        min_size: int | None = None,
        min_distance: int | None = None,
        nucleus_diameter: float | None = None,
        nucleus_diameter_um: float | None = None,
        pixel_size_um: float | None = None,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        super().__init__(input_pattern=input_pattern, input_key=input_key, output_key=output_key, identifier=identifier)
        self.sigma = None if sigma is None else float(sigma)
        self.min_size = None if min_size is None else int(min_size)
        self.min_distance = None if min_distance is None else int(min_distance)
        self._size = NucleusSize(nucleus_diameter, nucleus_diameter_um, pixel_size_um)
        self.nucleus_diameter = vars(self._size)  # a parameter: a change reruns the job

    def warm_up(self) -> None:
        super().warm_up()
        _import_image_tools()

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            with open_file(inp, "r") as f:
                image = read_image(f, self.input_key)
                attrs = dict(f.attrs)
            diameter = self._size.of(image, inp, attrs)
            sigma, min_size, min_distance = threshold_settings(diameter)
            labels = threshold_nuclei(
                image,
                sigma if self.sigma is None else self.sigma,
                min_size if self.min_size is None else self.min_size,
                min_distance if self.min_distance is None else self.min_distance,
            )
            with open_file(out, "a") as f:
                write_image(f, self.output_key, labels, is_label=True, visible=False)
                f.attrs[DIAMETER_ATTR] = float(diameter)
                f.attrs[SCALE_ATTR] = float(rescale_factor(diameter, THRESHOLD_DIAMETER))


def seeded_cells(
    nuclei: np.ndarray, cell_image: np.ndarray, sigma: float = 2.0, threshold: float | None = None
) -> np.ndarray:
    """Cells grown from the nuclei by a seeded watershed on the cell channel.

    The foreground is the smoothed cell channel above ``threshold`` (Otsu by
    default, computed after a saturated plateau is lowered:
    :func:`~batchlib.saturation.tame_saturation`) plus the nuclei; every
    cell keeps the id of its nucleus.

    Examples
    --------
    >>> nuclei = np.zeros((30, 30), np.uint32); nuclei[5:8, 5:8] = 3; nuclei[20:23, 20:23] = 7
    >>> cells_img = np.zeros((30, 30)); cells_img[2:12, 2:12] = 50; cells_img[16:28, 16:28] = 50
    >>> cells = seeded_cells(nuclei, cells_img, sigma=0.5)
    >>> sorted(np.unique(cells).tolist()), int((cells == 7).sum()) > 9
    ([0, 3, 7], True)
    """
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    cell_image = fill_nonfinite(cell_image)
    if threshold is None:  # saturated debris would take Otsu's threshold for itself; a given one is the user's
        cell_image = tame_saturation(cell_image)
    smooth = gaussian(cell_image.astype(np.float32), sigma=sigma, preserve_range=True)
    if threshold is None:
        threshold = threshold_otsu(smooth) if smooth.max() > smooth.min() else np.inf
    foreground = (smooth > threshold) | (nuclei > 0)
    cells = watershed(-smooth, markers=nuclei.astype(np.int64), mask=foreground)
    return cells.astype(np.uint32)


class SegmentCells(BatchJobOnContainer):
    """Cell segmentation: seeded watershed from the nuclei on a cell channel (membrane, serum).

    The images of a batch are segmented in :func:`batchlib.executors.job_threads` threads (the Gaussian and
    the watershed release the GIL: 1.8x on two cores at 2048 x 2048); the containers are read and written
    in the calling thread only (h5py's direct chunk reads crash when two threads call them).
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("sigma", "threshold")
    version = "2"  # 2: a saturated plateau is lowered before intensities are scaled (debris)

    batch_size = 8

    def __init__(
        self,
        nuclei_key: str = "nucleus_segmentation",
        cell_key: str = "cells",
        output_key: str = "cell_segmentation",
        sigma: float = 2.0,
        threshold: float | None = None,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        super().__init__(
            input_pattern=input_pattern, input_key=[nuclei_key, cell_key], output_key=output_key, identifier=identifier
        )
        self.sigma = float(sigma)
        self.threshold = threshold

    def warm_up(self) -> None:
        super().warm_up()
        _import_image_tools()

    def run(self, input_files, output_files, **kwargs):
        from ..executors import job_threads
        from ..io.threads import compute_in_threads

        nuclei_key, cell_key = self.input_keys

        def read(paths: tuple[str, str]) -> tuple:  # the stored bytes; decompressed in the computing thread
            with open_file(paths[0], "r") as f:
                return read_image_later(f, nuclei_key), read_image_later(f, cell_key)

        def segment(nuclei, cells) -> np.ndarray:
            return seeded_cells(nuclei(), cells(), self.sigma, self.threshold)

        def write(paths: tuple[str, str], cells: np.ndarray) -> None:
            with open_file(paths[1], "a") as f:
                write_image(f, self.output_key, cells, is_label=True, visible=False)

        compute_in_threads(zip(input_files, output_files), read, segment, write, job_threads())
