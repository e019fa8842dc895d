"""The brightness of an image's typical nucleus, so that a few far brighter nuclei do not set its scale.

Why: segmentation scales an image's intensities to its 1st and 99.8th
percentiles (as StarDist models are trained). When a few nuclei (mitotic or
dying cells, a clump of dye) are many times brighter than the rest and
cover more than 0.2% of the image, the 99.8th percentile lands in them and
every other nucleus ends up near zero, too dim for the model: 5 of 64 nuclei
20x brighter drop F1 from 1.00 to 0.74 (``python bench/bright_nuclei.py``).

How: at the scale of the image's nuclei (their diameter, estimated or
given), in the central part of the image block-averaged to nuclei of about 8
pixels (at most 256 x 256 of its pixels: a few milliseconds at any size),
nuclei are the local maxima of a difference of Gaussians that stand out of
its noise (10 times its robust deviation); the typical nucleus level is the
median of the smoothed image at those maxima, so one nucleus in two is at
least that bright. The top of the intensity scale is kept at most
:data:`CEILING` times that level above the bottom. On images without such
outliers the 99.8th percentile is at most 2.6 times the typical level (the
synthetic nuclei of every appearance, the real ndev frames and StarDist's
test image, at every scale of ``bench/segmentation_quality.py``), so they are
scaled as before; above the ceiling, the few brightest nuclei saturate, which
the model was trained on.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .nucleus_size import central_crop, pow2_block_mean

#: The top of the intensity scale is at most this many times the typical nucleus level above its bottom.
CEILING = 3.0
#: A blob stands out when its difference-of-Gaussians answer is this many robust deviations above zero.
_MIN_SCORE = 10.0
#: Fewer blobs than this say nothing about a typical nucleus.
_MIN_BLOBS = 3
#: The image is block-averaged until its nuclei are about this many pixels across (cheaper, same answer).
_WORKING_DIAMETER = 8.0
#: Side of the central region looked at, in block-averaged pixels (a few hundred nuclei of the working size).
_WORKING_SIDE = 256


def typical_nucleus_level(image: np.ndarray, diameter: float) -> float | None:
    """The intensity of a typical nucleus of ``diameter`` pixels in ``image``; None if it shows too few.

    Parameters
    ----------
    image : ndarray
        2D image, nuclei bright on a darker background; NaN and infinite
        pixels count as the median of the others.
    diameter : float
        The nuclei's typical diameter in pixels
        (:func:`batchlib.nucleus_size.estimate_diameter`); NaN gives None.

    Returns
    -------
    float or None
        The median, over the nuclei found, of the image smoothed at their
        scale at their centres.

    Examples
    --------
    >>> yy, xx = np.mgrid[:256, :256]
    >>> image = np.full((256, 256), 100.0)
    >>> for i, (y, x) in enumerate([(y, x) for y in range(24, 256, 40) for x in range(24, 256, 40)]):
    ...     image[(yy - y) ** 2 + (xx - x) ** 2 <= 8**2] = 20000.0 if i < 3 else 1000.0  # 3 of 36 far brighter
    >>> round(typical_nucleus_level(image, 17.0), -1)  # the 1000 disks, smoothed at their scale
    900.0
    """
    if not (math.isfinite(diameter) and diameter > 0):
        return None
    factor = 2 ** max(0, math.floor(math.log2(diameter / _WORKING_DIAMETER)))
    region, _, _ = central_crop(np.asarray(image), _WORKING_SIDE * factor)
    x = np.asarray(region, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        if not finite.any():
            return None
        x = np.where(finite, x, np.median(x[finite]))
    x = pow2_block_mean(x, factor)
    sigma = diameter / factor / (2 * math.sqrt(2))  # where a disk's Laplacian-of-Gaussian answer peaks
    fine = ndi.gaussian_filter(x, sigma / 1.6, truncate=3.0)
    answer = fine - ndi.gaussian_filter(x, sigma * 1.6, truncate=3.0)
    sample = answer.ravel()[::4]  # a quarter of the pixels give the same robust deviation
    deviation = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    window = max(3, int(diameter / factor / 2))
    maxima = (answer == ndi.maximum_filter(answer, size=window)) & (answer > max(_MIN_SCORE * deviation, 0.0))
    if np.count_nonzero(maxima) < _MIN_BLOBS:
        return None
    return float(np.median(fine[maxima]))


def intensity_ceiling(image: np.ndarray, low: float, high: float, diameter: float) -> float:
    """``high``, the top of ``image``'s intensity scale, lowered to :data:`CEILING` typical nuclei above ``low``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:256, :256]
    >>> image = np.full((256, 256), 100.0)
    >>> for i, (y, x) in enumerate([(y, x) for y in range(24, 256, 40) for x in range(24, 256, 40)]):
    ...     image[(yy - y) ** 2 + (xx - x) ** 2 <= 8**2] = 20000.0 if i < 3 else 1000.0
    >>> round(intensity_ceiling(image, 100.0, 20000.0, 17.0), -1)  # 100 + 3 x (896 - 100)
    2490.0
    >>> intensity_ceiling(image, 100.0, 1500.0, 17.0)  # already below the ceiling
    1500.0
    """
    typical = typical_nucleus_level(image, diameter)
    if typical is None or not typical > low:
        return high
    return float(min(high, low + CEILING * (typical - low)))
