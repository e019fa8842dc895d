"""The StarDist model side of nuclei segmentation: loading, normalizing, tiling.

The shipped model (:data:`SHIPPED_MODEL`, trained by
``scripts/train_nuclei_model.py``), a model folder, or a registered
pretrained name; the nucleus diameter a model records (:data:`MODEL_INFO`);
the input it expects (:func:`prepare_for_model`). The segment job is in
:mod:`batchlib.jobs.segmentation`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from ..brightness import intensity_ceiling
from ..errors import ConfigError
from ..io.images import finite_pixels
from ..saturation import tame_saturation

#: The nuclei model shipped with batchlib (trained by scripts/train_nuclei_model.py).
SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models", "nuclei_stardist")


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8, diameter: float | None = None) -> np.ndarray:
    """Percentile normalization, as the StarDist models were trained with.

    The percentiles are those of the finite pixels; NaN and infinite pixels
    become 0 (background) afterwards. A saturated plateau is first lowered
    to the brightest level of the other pixels
    (:func:`batchlib.saturation.tame_saturation`), so that saturated debris
    does not set the scale and leave the nuclei near zero. Given the nuclei's
    ``diameter`` (pixels), the top of the scale is also kept within a few
    typical nuclei (:func:`batchlib.brightness.intensity_ceiling`), so that a
    few far brighter nuclei do not leave the others near zero.

    Examples
    --------
    >>> x = normalize(np.arange(1000.0))
    >>> round(float(x[10]), 3), round(float(x[997]), 3)
    (0.0, 1.0)
    >>> normalize(np.array([0.0, np.nan, 10.0, np.inf]), 0, 100).tolist()
    [0.0, 0.0, 1.0, 0.0]
    """
    image = tame_saturation(image)
    finite = finite_pixels(image)
    lo, hi = np.percentile(finite, [low, high]) if finite.size else (0.0, 0.0)
    if diameter is not None and finite.size:
        hi = intensity_ceiling(image, float(lo), float(hi), diameter)
    normalized = ((image.astype(np.float32) - lo) / max(hi - lo, 1e-20)).astype(np.float32)
    if finite is not image:
        normalized[~np.isfinite(normalized)] = 0
    return normalized


def auto_tiles(shape: tuple[int, ...], tile_size: int) -> tuple[int, ...]:
    """Tiles per axis so that no tile is larger than ``tile_size`` pixels.

    Examples
    --------
    >>> auto_tiles((2048, 1000), 1024)
    (2, 1)
    """
    return tuple(max(1, math.ceil(s / tile_size)) for s in shape)


#: A file in a model folder with what batchlib knows of the model: ``{"nucleus_diameter": 16.0}``,
#: the typical nucleus diameter (pixels, as :func:`batchlib.nucleus_size.estimate_diameter`
#: measures it) of the images it was trained on.
MODEL_INFO = "batchlib.json"


def recorded_diameter(model: str | None) -> float | None:
    """The nucleus diameter the model was trained for, if its folder records it (:data:`MODEL_INFO`).

    ``model`` is None for the shipped model, a folder, or a registered name
    (those record none).
    """
    folder = SHIPPED_MODEL if model is None else model
    path = os.path.join(folder, MODEL_INFO)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        value = json.load(f).get("nucleus_diameter")
    return float(value) if value else None


def model_fingerprint(folder: str) -> str:
    """A hash of the model's configuration and weights files: retraining changes it."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith((".json", ".h5")):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()[:16]


class OneCallPredict:
    """A Keras model whose ``predict`` runs the batch it is given as one call.

    StarDist hands Keras one image (or one tile) per ``predict`` call, and
    Keras 3's ``Model.predict`` sets up a data pipeline on every call, which
    costs more than the network itself (BENCHMARKS.md, ``bench/segment.py``).
    ``predict_on_batch`` gives the same numbers without it. Every other
    attribute is the wrapped model's.
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


def prepare_for_model(image: np.ndarray, scale: float, diameter: float | None = None) -> np.ndarray:
    """The image normalized (:func:`normalize`) and, if it is to be shrunk by ``scale``, smoothed first.

    ``diameter``: the nuclei's diameter in pixels, if known (it keeps a few far
    brighter nuclei from setting the intensity scale). StarDist zooms by
    linear interpolation, which would alias when shrinking (texture and noise
    folding into false edges); a Gaussian of ``(1 / scale - 1) / 2`` pixels
    first, as scikit-image's ``rescale`` does.
    """
    normalized = normalize(image, diameter=diameter)
    if scale < 1:
        from scipy.ndimage import gaussian_filter

        normalized = gaussian_filter(normalized, (1 / scale - 1) / 2)
    return normalized
