"""Saturated pixels: a plateau at an image's maximum, tamed before intensities are scaled.

Why: segmentation scales an image's intensities by percentiles (the 1st
and 99.8th, as StarDist models are trained). A saturated object larger than
0.2% of the image (fluorescent debris, a bubble, a dead cell's blob: a
30 x 30 pixel square in a 512 x 512 image) moves the 99.8th percentile to the
saturation level, and the nuclei, tens of times dimmer, end up near zero:
the model finds none of them, and the nucleus-size estimate sees only the
debris. Saturated pixels carry no intensity information anyway, so before
scaling they are set to the brightest level of the other pixels (their
99.8th percentile): debris then looks as bright as the brightest nuclei,
and saturated nuclei look as they do without the plateau.

Only a plateau counts: at least :data:`MIN_PLATEAU_PIXELS` pixels (and a
:data:`MIN_PLATEAU_FRACTION` of the image) at exactly the maximum, as a
detector's ceiling makes them. An image of continuous intensities reaches
its maximum in a pixel or two and is returned as it is.
"""

from __future__ import annotations

import numpy as np

#: A maximum held by at least this many pixels ...
MIN_PLATEAU_PIXELS = 16
#: ... and at least this share of the image is a saturated plateau.
MIN_PLATEAU_FRACTION = 1e-5
#: The level the plateau is lowered to: this percentile of the other pixels.
HIGH_PERCENTILE = 99.8


def saturated_level(image: np.ndarray) -> float | None:
    """The value of the saturated plateau at ``image``'s maximum, or None if there is none.

    NaN and infinite pixels are left out.

    Examples
    --------
    >>> x = np.arange(100.0)
    >>> saturated_level(x) is None
    True
    >>> x[:20] = 4095
    >>> saturated_level(x)
    4095.0
    """
    values = image[np.isfinite(image)] if image.dtype.kind == "f" else image
    if values.size == 0:
        return None
    top = values.max()
    count = int(np.count_nonzero(values == top))
    if count < max(MIN_PLATEAU_PIXELS, MIN_PLATEAU_FRACTION * values.size) or count == values.size:
        return None
    return float(top)


def tame_saturation(image: np.ndarray) -> np.ndarray:
    """``image`` with its saturated plateau lowered to the 99.8th percentile of the other pixels.

    Returned as it is (no copy) when it has no plateau, or when the other
    pixels hold no contrast (a mask-like image: objects at one value on a
    flat background). Otherwise a copy, in the same dtype.

    Parameters
    ----------
    image : ndarray
        An image of any shape; NaN and infinite pixels are kept as they are.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> x = np.tile(np.arange(100, dtype=np.uint16), 10)  # a ramp 0..99, ten times
    >>> x[:50] = 65535  # a saturated blob
    >>> tamed = tame_saturation(x)
    >>> int(tamed.max()), int(tamed[50:].max())
    (99, 99)
    >>> mask_like = np.zeros(100); mask_like[:30] = 5.0
    >>> tame_saturation(mask_like) is mask_like
    True
    """
    top = saturated_level(image)
    if top is None:
        return image
    finite = np.isfinite(image) if image.dtype.kind == "f" else None
    below = image < top if finite is None else finite & (image < top)
    others = image[below]
    lo, hi = np.percentile(others, [1.0, HIGH_PERCENTILE]) if others.size else (top, top)
    if not hi > lo:
        return image
    tamed = image.copy()
    tamed[image == top] = np.asarray(hi).astype(image.dtype) if image.dtype.kind in "iu" else hi
    return tamed
