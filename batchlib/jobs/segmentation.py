"""Segmentation jobs: nuclei with StarDist or a classical method, cells by seeded watershed."""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..base import BatchJobOnContainer
from ..errors import ConfigError
from ..io import open_file, read_image, write_image
from ..io.images import finite_pixels

#: The nuclei model shipped with batchlib (trained by scripts/train_nuclei_model.py).
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models", "nuclei_stardist")


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Percentile normalization, as the StarDist models were trained with.

    The percentiles are those of the finite pixels; NaN and infinite pixels
    become 0 (background) afterwards.

    Examples
    --------
    >>> x = normalize(np.arange(1000.0))
    >>> round(float(x[10]), 3), round(float(x[997]), 3)
    (0.0, 1.0)
    >>> normalize(np.array([0.0, np.nan, 10.0, np.inf]), 0, 100).tolist()
    [0.0, 0.0, 1.0, 0.0]
    """
    finite = finite_pixels(image)
    lo, hi = np.percentile(finite, [low, high]) if finite.size else (0.0, 0.0)
    normalized = ((image.astype(np.float32) - lo) / max(hi - lo, 1e-20)).astype(np.float32)
    if finite is not image:
        normalized[~np.isfinite(normalized)] = 0
    return normalized


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


def auto_tiles(shape: tuple[int, ...], tile_size: int) -> tuple[int, ...]:
    """Tiles per axis so that no tile is larger than ``tile_size`` pixels.

    Examples
    --------
    >>> auto_tiles((2048, 1000), 1024)
    (2, 1)
    """
    return tuple(max(1, math.ceil(s / tile_size)) for s in shape)


def _model_fingerprint(folder: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith((".json", ".h5")):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()[:16]


class OneCallPredict:
    """A Keras model whose ``predict`` runs the batch it is given as one call.

    StarDist hands Keras one image (or one tile) per ``predict`` call, and
    Keras 3's ``Model.predict`` sets up a data pipeline on every call: about
    60 ms per 512 x 512 image on the CPU here, more than the network itself
    (40 ms). ``predict_on_batch`` gives the same numbers without it. Every
    other attribute is the wrapped model's.
    """

    def __init__(self, keras_model):
        self.keras_model = keras_model

    def predict(self, x, **kwargs):
        return self.keras_model.predict_on_batch(x)

    def __getattr__(self, name: str):
        return getattr(self.keras_model, name)


def load_stardist(model: str | None = None, gpu: bool = False):
    """A StarDist2D model: the shipped one (None), one in a folder, or a registered pretrained name.

    Registered names (``"2D_versatile_fluo"``) are downloaded by StarDist and
    need internet; a folder needs ``config.json``, ``thresholds.json`` and the
    weights. The model predicts through :class:`OneCallPredict` (same labels,
    less time per image). What TensorFlow and StarDist print meanwhile is
    logged at DEBUG (:func:`batchlib.log.quiet_tensorflow`).
    """
    from ..log import quiet_tensorflow

    if not gpu:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # before TensorFlow starts: CPU only
    with quiet_tensorflow("stardist"):
        from stardist.models import StarDist2D

        folder = SHIPPED_MODEL if model is None else model
        if os.path.isdir(folder):
            if not os.path.exists(os.path.join(folder, "config.json")):
                raise ConfigError(f"model folder {folder} has no config.json: not a StarDist model")
            loaded = StarDist2D(
                None, name=os.path.basename(os.path.normpath(folder)), basedir=os.path.dirname(os.path.normpath(folder))
            )
        else:
            loaded = _pretrained(model)
    loaded.keras_model = OneCallPredict(loaded.keras_model)
    return loaded


def _pretrained(model: str):
    """A registered StarDist model by name (downloaded: needs internet)."""
    from stardist.models import StarDist2D

    try:
        pretrained = StarDist2D.from_pretrained(model)
    except Exception as err:  # no internet, or a download that failed
        raise ConfigError(f"cannot load the pretrained StarDist model {model!r}: {err}") from err
    if pretrained is None:
        raise ConfigError(
            f"model {model!r} is neither a folder nor a registered StarDist model name "
            "(e.g. '2D_versatile_fluo'; StarDist2D.from_pretrained() lists them)"
        )
    return pretrained


class SegmentNucleiStarDist(BatchJobOnContainer):
    """Nuclei instance segmentation with StarDist, written as a multiscale label image.

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
        Images larger than this (per axis) are predicted in tiles.
    gpu : bool
        Let TensorFlow use a GPU; by default the job runs on the CPU.
    """

    batch_size = 16

    def __init__(
        self,
        input_key: str = "nuclei",
        output_key: str = "nucleus_segmentation",
        model: str | None = None,
        prob_thresh: float | None = None,
        nms_thresh: float | None = None,
        tile_size: int = 1024,
        gpu: bool = False,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        super().__init__(input_pattern=input_pattern, input_key=input_key, output_key=output_key, identifier=identifier)
        self.model = os.fspath(model) if model is not None else None
        self.prob_thresh = prob_thresh
        self.nms_thresh = nms_thresh
        self.tile_size = int(tile_size)
        self._gpu = bool(gpu)
        folder = SHIPPED_MODEL if model is None else self.model
        if model is None and not os.path.isdir(SHIPPED_MODEL):
            raise ConfigError(
                f"the shipped nuclei model is missing at {SHIPPED_MODEL}; "
                "train it with scripts/train_nuclei_model.py or pass model="
            )
        self._model_id = _model_fingerprint(folder) if os.path.isdir(folder) else str(model)

    def parameters(self) -> dict:
        # The model's files count (retraining reruns); the device does not.
        return {
            "input_keys": self.input_keys,
            "output_keys": self.output_keys,
            "model": self._model_id,
            "prob_thresh": self.prob_thresh,
            "nms_thresh": self.nms_thresh,
            "tile_size": self.tile_size,
        }

    def load_model(self):
        return load_stardist(self.model, self._gpu)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Labels for one image, with the model of this worker."""
        model = self.worker_resource("stardist", self.load_model)
        labels, _ = model.predict_instances(
            normalize(image),
            prob_thresh=self.prob_thresh,
            nms_thresh=self.nms_thresh,
            n_tiles=auto_tiles(image.shape, self.tile_size),
            show_tile_progress=False,
        )
        return labels.astype(np.uint32)

    def run(self, input_files, output_files, **kwargs):
        # One I/O thread reads the batch's images and writes their labels while the model predicts
        # (TensorFlow and the (de)compression release the GIL); reads are queued first, writes in order.
        with ThreadPoolExecutor(1, thread_name_prefix="batchlib-stardist-io") as io:
            images = io.map(self._read, input_files)
            writes = [io.submit(self._write, out, self.predict(image)) for image, out in zip(images, output_files)]
            for write in writes:
                write.result()

    def _read(self, path: str) -> np.ndarray:
        with open_file(path, "r") as f:
            return read_image(f, self.input_key)

    def _write(self, path: str, labels: np.ndarray) -> None:
        with open_file(path, "a") as f:
            write_image(f, self.output_key, labels, is_label=True, visible=False)


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

    smooth = gaussian(fill_nonfinite(image).astype(np.float32), sigma=sigma, preserve_range=True)
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


class SegmentNucleiThreshold(BatchJobOnContainer):
    """Nuclei without a model: smoothing, Otsu threshold and a distance-transform watershed."""

    def __init__(
        self,
        input_key: str = "nuclei",
        output_key: str = "nucleus_segmentation",
        sigma: float = 1.5,
        min_size: int = 20,
        min_distance: int = 4,
        input_pattern: str = "*.h5",
        identifier: str | None = None,
    ):
        super().__init__(input_pattern=input_pattern, input_key=input_key, output_key=output_key, identifier=identifier)
        self.sigma, self.min_size, self.min_distance = float(sigma), int(min_size), int(min_distance)

    def run(self, input_files, output_files, **kwargs):
        for inp, out in zip(input_files, output_files):
            with open_file(inp, "r") as f:
                image = read_image(f, self.input_key)
            labels = threshold_nuclei(image, self.sigma, self.min_size, self.min_distance)
            with open_file(out, "a") as f:
                write_image(f, self.output_key, labels, is_label=True, visible=False)


def seeded_cells(
    nuclei: np.ndarray, cell_image: np.ndarray, sigma: float = 2.0, threshold: float | None = None
) -> np.ndarray:
    """Cells grown from the nuclei by a seeded watershed on the cell channel.

    The foreground is the smoothed cell channel above ``threshold`` (Otsu by
    default) plus the nuclei; every cell keeps the id of its nucleus.

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

    smooth = gaussian(fill_nonfinite(cell_image).astype(np.float32), sigma=sigma, preserve_range=True)
    if threshold is None:
        threshold = threshold_otsu(smooth) if smooth.max() > smooth.min() else np.inf
    foreground = (smooth > threshold) | (nuclei > 0)
    cells = watershed(-smooth, markers=nuclei.astype(np.int64), mask=foreground)
    return cells.astype(np.uint32)


class SegmentCells(BatchJobOnContainer):
    """Cell segmentation: seeded watershed from the nuclei on a cell channel (membrane, serum)."""

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

    def run(self, input_files, output_files, **kwargs):
        nuclei_key, cell_key = self.input_keys
        for inp, out in zip(input_files, output_files):
            with open_file(inp, "r") as f:
                nuclei, cell_image = read_image(f, nuclei_key), read_image(f, cell_key)
            cells = seeded_cells(nuclei, cell_image, self.sigma, self.threshold)
            with open_file(out, "a") as f:
                write_image(f, self.output_key, cells, is_label=True, visible=False)
