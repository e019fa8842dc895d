"""Synthetic fluorescence nuclei images with ground truth, at any nucleus size.

Made for training and evaluating nuclei segmentation on data unlike the
shipped model's: nucleus diameters from 6 to 120 pixels, widefield and
confocal looks, sparse to confluent fields. :func:`nuclei_image` returns an
image and its label image; :class:`Appearance` holds every knob and
:func:`random_appearance` draws one over the whole variety.

How an image is made:

1. Geometry. Objects are placed at random positions, or (a share
   ``clump_fraction``) right against another one. Each is an ellipse in
   normalized coordinates, optionally dented on one long side (a bean, or
   kidney) and with a radial Fourier perturbation of its outline (lobes).
   Where two objects would overlap, each pixel goes to the object whose
   centre is closer in normalized radius, so touching nuclei are pressed
   flat against each other and never overlap; an object that would share
   more than a fifth of the smaller one's area is placed elsewhere (all
   objects at once, then those rejected, in up to 6 rounds; what does not
   fit is left out). Every step works on arrays of objects, not per pixel.
2. Ground truth. Objects left with fewer than 4 pixels (cut by the border,
   squeezed) are dropped, a piece cut off from its object is dropped, and
   the rest get ids 1..n. Only then is the image rendered, from exactly
   these labels.
3. Intensity, per pixel of each object: its brightness times a dome profile
   (widefield: thicker in the middle), an optional bright rim (confocal),
   a chromatin texture (a smooth random field, lognormal), dark nucleoli
   and a slight dip where two nuclei touch.
4. Optics and camera: a Gaussian PSF plus an optional wide halo of
   out-of-focus light and extra defocus blur, a background with smooth haze,
   illumination that falls off with a gradient and towards the corners,
   Poisson shot noise, Gaussian read noise, a camera offset, a gamma, and
   clipping at the dtype's maximum (saturation).

Object kinds: normal interphase nuclei; condensed mitotic nuclei (prophase
to metaphase: small, bright, compact or a bar seen edge-on), one object
each; anaphase / telophase pairs, two objects; apoptotic nuclei, a cluster
of 3-8 small bright round fragments, **one object per fragment**: the
fragments are separate blobs in the image (as most nuclei annotations
treat them), a star-convex model such as StarDist can only represent them
one by one, and merging fragments after segmentation is easy while
splitting a merged annotation is not.

Intensities are fractions of the full scale of the output dtype (1.0 is
65535 for uint16, 255 for uint8, 1.0 for float32); read noise is in
photo-electrons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi
from skimage.measure import label as connected_regions

NORMAL, MITOTIC, PAIR, APOPTOTIC = 0, 1, 2, 3
MIN_PIXELS = 4
# A new object may share at most this fraction of the smaller object's area with an earlier one.
MAX_OVERLAP = 0.2
_DTYPE_MAX = {"uint16": 65535, "uint8": 255, "float32": 1.0}


@dataclass
class Appearance:
    """Every knob of a synthetic nuclei image.

    The defaults give a plausible widefield image: moderately dense,
    some clumps, slight variation of shape and brightness, a few mitoses.
    Sizes relative to the nucleus are fractions of the ``diameter`` given
    to :func:`nuclei_image`; intensities are fractions of the dtype's
    full scale.

    Attributes
    ----------
    size_sigma : float
        Lognormal sigma of the nuclei's equivalent diameters (median = ``diameter``).
    elongation : float
        Mean of aspect ratio - 1 (exponentially distributed, aspect at most 3).
    irregularity : float
        Relative RMS of the radial Fourier perturbation of the outline (harmonics 2-7); 0 gives ellipses.
    kidney_fraction : float
        Share of nuclei made bean / kidney shaped: elongated (aspect at least 1.5-2.2), the middle of one
        long side pulled in by 40-70% of the half width.
    mitotic_fraction : float
        Share of objects that are condensed mitotic nuclei (one object each).
    mitotic_pair_fraction : float
        Share of objects that are anaphase / telophase pairs (two objects each).
    apoptotic_fraction : float
        Share of objects that are apoptotic clusters of 3-8 fragments (one object per fragment).
    density : float
        Fraction of the image to cover with nuclei; about 0.6 is a confluent monolayer (what fits is placed).
    n_nuclei : int or None
        Number of objects to place instead of ``density``.
    clump_fraction : float
        Share of objects placed pressed against an earlier one.
    brightness : float
        Median signal of a nucleus above the background.
    brightness_sigma : float
        Lognormal sigma of the per-nucleus brightness.
    saturated_fraction : float
        Share of objects, the brightest, that saturate: the exposure (signal and background) is raised
        until they reach 1.2-2x the full scale, and they are clipped; 0 leaves the exposure as it is.
        The background is kept below 0.25, so nuclei of a low-contrast image may not reach saturation.
    dome : float
        0-1: how much the intensity falls from the centre to the edge (0 flat, 1 a hemisphere).
    rim : float
        Extra brightness of the nuclear periphery, relative (confocal; 0 none).
    texture : float
        Standard deviation of the log chromatin texture (0 smooth).
    texture_scale : float
        Correlation length of the texture, fraction of ``diameter``.
    nucleoli : float
        Mean number of dark nucleoli per interphase nucleus.
    psf_sigma : float
        Gaussian PSF sigma in pixels; at most 0.2 * diameter + 0.5 is used
        (small nuclei are imaged at low magnification, where the PSF spans few pixels).
    defocus : float
        Extra Gaussian blur sigma, fraction of ``diameter`` (out of focus; 0 in focus).
    halo : float
        Fraction of the light spread in a wide halo (widefield out-of-focus glow; 0 confocal).
    background : float
        Background level.
    haze : float
        Relative amplitude of smooth random background variations.
    gradient : float
        Relative illumination change across the field (linear, random direction).
    vignetting : float
        Relative illumination loss in the corners.
    noise : bool
        Shot and read noise; False gives the noiseless render.
    photons : float
        Photons of a pixel at ``brightness`` (sets the shot noise).
    read_noise : float
        Read noise sigma in photo-electrons.
    offset : float
        Camera offset added after the noise.
    gamma : float
        Gamma applied to the recorded intensities (1 linear).
    dtype : str
        ``"uint16"``, ``"uint8"`` or ``"float32"`` (float32 in 0..1).
    """

    size_sigma: float = 0.2
    elongation: float = 0.25
    irregularity: float = 0.04
    kidney_fraction: float = 0.05
    mitotic_fraction: float = 0.02
    mitotic_pair_fraction: float = 0.01
    apoptotic_fraction: float = 0.01
    density: float = 0.25
    n_nuclei: int | None = None
    clump_fraction: float = 0.3
    brightness: float = 0.1
    brightness_sigma: float = 0.25
    saturated_fraction: float = 0.0
    dome: float = 0.5
    rim: float = 0.0
    texture: float = 0.15
    texture_scale: float = 0.08
    nucleoli: float = 1.0
    psf_sigma: float = 1.0
    defocus: float = 0.0
    halo: float = 0.1
    background: float = 0.01
    haze: float = 0.2
    gradient: float = 0.1
    vignetting: float = 0.15
    noise: bool = True
    photons: float = 300.0
    read_noise: float = 2.0
    offset: float = 0.0015
    gamma: float = 1.0
    dtype: str = "uint16"


def random_appearance(rng: np.random.Generator | int | None = None) -> Appearance:
    """Draw an appearance over the whole variety: widefield or confocal, sparse to confluent, dim to saturated.

    40% confocal (no halo, flat, often a rim, stronger texture), 60% widefield (dome, halo 0.05-0.3).
    Density log-uniform 0.04-0.5, or 0.5-0.7 (confluent) in 15% of draws; background log-uniform
    0.001-0.05 with nuclei 1.6-41x as bright; saturation in 20% of draws; mitosis-heavy (up to 30%)
    in 10%; defocus in 15%; a gamma of 0.6-1.6 in 40%. The ranges of every knob are in the code.

    Parameters
    ----------
    rng : Generator or int or None
        Random generator or seed.

    Returns
    -------
    Appearance

    Examples
    --------
    >>> a = random_appearance(1)
    >>> a == random_appearance(1), 0 <= a.density <= 0.7
    (True, True)
    """
    rng = np.random.default_rng(rng)
    u = rng.random(40).tolist()  # a fixed number of draws, so that one knob's range does not shift the others
    confocal = u[0] < 0.4
    background = 0.001 * 50 ** u[36]  # log-uniform 0.001-0.05
    contrast = 0.6 * (40 / 0.6) ** u[37]  # nuclei 1.6x to 41x the background
    return Appearance(
        size_sigma=0.1 + 0.2 * u[1],
        elongation=0.05 * 14 ** u[2],  # log-uniform 0.05-0.7
        irregularity=0.0 if u[3] < 0.3 else 0.1 * u[4],
        kidney_fraction=0.0 if u[5] < 0.5 else 0.3 * u[6],
        mitotic_fraction=0.3 * u[8] if u[7] < 0.1 else 0.06 * u[8],
        mitotic_pair_fraction=0.04 * u[9],
        apoptotic_fraction=0.0 if u[10] < 0.4 else 0.05 * u[11],
        density=0.5 + 0.2 * u[13] if u[12] < 0.15 else 0.04 * 12.5 ** u[13],
        clump_fraction=0.8 * u[14],
        brightness=min(background * contrast, 0.8),
        brightness_sigma=0.1 + 0.4 * u[15],
        saturated_fraction=0.0 if u[16] < 0.8 else 0.01 + 0.14 * u[17],
        dome=0.3 * u[18] if confocal else 0.3 + 0.6 * u[18],
        rim=(0.8 * u[20] if u[19] < 0.5 else 0.0) if confocal else 0.0,
        texture=0.15 + 0.35 * u[21] if confocal else 0.05 + 0.25 * u[21],
        texture_scale=0.04 + 0.08 * u[22],
        nucleoli=3.0 * u[23],
        psf_sigma=0.5 * 6 ** u[24],
        defocus=0.05 + 0.2 * u[26] if u[25] < 0.15 else 0.0,
        halo=0.0 if confocal else 0.05 + 0.25 * u[27],
        background=background,
        haze=0.3 * u[28],
        gradient=0.4 * u[29],
        vignetting=0.5 * u[30],
        photons=25 * 120 ** u[31],
        read_noise=0.5 + 9.5 * u[32],
        offset=0.01 * u[33],
        gamma=1.0 if u[34] < 0.6 else 0.6 + u[35],
    )


_ORDERS = np.arange(2, 8)  # harmonics of the outline perturbation
_FIELDS = ("group", "oy", "ox", "a", "b", "angle", "dent", "amplitude", "phase", "kind", "bright", "texture")


@dataclass
class _Objects:
    """Shapes as arrays, one entry per object, sorted by group.

    A group (a nucleus, a mitotic pair, an apoptotic cluster) is placed as one.
    """

    group: np.ndarray
    oy: np.ndarray  # offset from the group's centre
    ox: np.ndarray
    a: np.ndarray  # semi-axes, a >= b
    b: np.ndarray
    angle: np.ndarray
    dent: np.ndarray  # kidney: the radius of one long side is cut by up to this fraction
    amplitude: np.ndarray  # (n, 6) relative amplitudes of the outline harmonics 2..7
    phase: np.ndarray  # (n, 6)
    kind: np.ndarray
    bright: np.ndarray  # relative to the image's brightness
    texture: np.ndarray  # relative to the image's texture
    group_radius: np.ndarray  # per group: its extent, for placing clumps

    def reach(self) -> np.ndarray:
        """Radius of a circle around the centre that holds the shape."""
        r_max = 1 + np.abs(self.amplitude).sum(1)
        return self.a * r_max

    def radius_towards(self, i: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Radius of the ellipses of objects i in directions (radians, image coordinates)."""
        rel = direction - self.angle[i]
        a, b = self.a[i], self.b[i]
        return a * b / np.hypot(b * np.cos(rel), a * np.sin(rel))


def _harmonics(rng: np.random.Generator, rms: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random outline perturbations with the given RMS (relative radius), amplitude ~ order^-1.5 (smooth lobes)."""
    amplitude = rng.standard_normal((n, len(_ORDERS))) / _ORDERS**1.5
    phase = rng.uniform(0, 2 * np.pi, (n, len(_ORDERS)))
    amplitude *= rms / np.sqrt(0.5 * (amplitude**2).sum(1, keepdims=True))
    return amplitude, phase


def _axes(diameter, aspect, amplitude: np.ndarray, dent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes for an equivalent diameter, given the outline's relative change of area.

    The harmonics add 0.5 * sum(amplitude^2); a dent (1 - dent * max(sin, 0)^8) removes 0.273 dent - 0.098 dent^2.
    """
    area = (1 + 0.5 * (amplitude**2).sum(1)) * (1 - 70 / 256 * dent + 6435 / 65536 * dent**2)
    r = np.asarray(diameter, float) / 2 / np.sqrt(area)
    aspect = np.asarray(aspect, float)
    return r * np.sqrt(aspect), r / np.sqrt(aspect)


def _objects(n: int, diameter: float, app: Appearance, rng: np.random.Generator) -> _Objects:
    """Draw the shapes of n groups: normal nuclei (vectorized) and the few special ones."""
    p = np.array([app.mitotic_fraction, app.mitotic_pair_fraction, app.apoptotic_fraction], float)
    p = np.concatenate([[max(1 - p.sum(), 0.0)], p])
    kinds = rng.choice(4, size=n, p=p / p.sum())
    columns: dict[str, list] = {name: [] for name in _FIELDS}
    group_radius = np.zeros(n)

    def add(groups, oy, ox, d, aspect, angle, dent, kind, irregular, bright, texture):
        k = len(groups)
        amplitude, phase = _harmonics(rng, irregular, k)
        a, b = _axes(d, aspect, amplitude, np.asarray(dent, float))
        values = (groups, oy, ox, a, b, angle, dent, amplitude, phase, [kind] * k, bright, texture)
        for name, value in zip(_FIELDS, values):
            columns[name].append(np.asarray(value, float))
        extent = np.hypot(oy, ox) + np.sqrt(a * b)
        np.maximum.at(group_radius, np.asarray(groups, int), extent)

    normal = np.flatnonzero(kinds == NORMAL)
    m = len(normal)
    d = diameter * np.exp(app.size_sigma * rng.standard_normal(m))
    aspect = 1 + np.minimum(rng.exponential(1, m) * app.elongation, 2.0)
    kidney = rng.random(m) < app.kidney_fraction
    dent = np.where(kidney, rng.uniform(0.4, 0.7, m), 0.0)
    aspect = np.where(kidney, np.maximum(aspect, rng.uniform(1.5, 2.2, m)), aspect)  # a bean is elongated
    zeros, ones = np.zeros(m), np.ones(m)
    add(normal, zeros, zeros, d, aspect, rng.uniform(0, np.pi, m), dent, NORMAL, app.irregularity, ones, ones)

    for g in np.flatnonzero(kinds != NORMAL):
        angle = rng.uniform(0, np.pi)
        if kinds[g] == MITOTIC:
            if rng.random() < 0.5:  # metaphase plate seen edge on: a bar
                d, aspect = diameter * rng.uniform(0.45, 0.6), rng.uniform(2.2, 3.5)
            else:  # prophase / prometaphase: compact, lumpy
                d, aspect = diameter * rng.uniform(0.5, 0.7), rng.uniform(1.0, 1.4)
            bright = rng.uniform(2, 4)
            add([g], [0], [0], [max(d, 3.0)], [aspect], [angle], [0], MITOTIC, 0.08, [bright], [1.8])
        elif kinds[g] == PAIR:  # anaphase / telophase: two bars perpendicular to the spindle
            half = diameter * rng.uniform(0.35, 0.7)
            d, aspect = max(diameter * rng.uniform(0.38, 0.55), 3.0), rng.uniform(1.3, 2.5)
            side = np.array([-1.0, 1.0])
            angles = angle + np.pi / 2 + rng.normal(0, 0.15, 2)
            bright = rng.uniform(1.8, 3.5) * rng.uniform(0.9, 1.1, 2)
            oy, ox = half * np.sin(angle) * side, half * np.cos(angle) * side
            add([g, g], oy, ox, [d, d], [aspect] * 2, angles, [0, 0], PAIR, 0.05, bright, [1.5, 1.5])
        else:  # apoptotic: small round fragments around the former nucleus, apart from each other
            count, spread = rng.integers(3, 9), diameter * 0.45
            placed: list[tuple[float, float, float]] = []
            for _ in range(4 * count):
                if len(placed) == count:
                    break
                r = max(diameter * rng.uniform(0.08, 0.16), 1.3)
                dist, phi = spread * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
                y, x = dist * np.sin(phi), dist * np.cos(phi)
                if all((y - py) ** 2 + (x - px) ** 2 > (r + pr + 0.8) ** 2 for py, px, pr in placed):
                    placed.append((y, x, r))
            oy, ox, r = (np.array(c) for c in zip(*placed))
            k = len(r)
            bright = rng.uniform(2, 4) * rng.uniform(0.8, 1.2, k)
            angles = rng.uniform(0, np.pi, k)
            add([g] * k, oy, ox, 2 * r, rng.uniform(1, 1.2, k), angles, [0] * k, APOPTOTIC, 0.0, bright, [0.3] * k)

    merged = {name: np.concatenate(values) for name, values in columns.items()}
    order = np.argsort(merged["group"], kind="stable")
    merged = {name: value[order] for name, value in merged.items()}
    merged["group"] = merged["group"].astype(np.int64)
    merged["kind"] = merged["kind"].astype(np.int64)
    return _Objects(**merged, group_radius=group_radius)


def _boxes(cy: np.ndarray, cx: np.ndarray, reach: np.ndarray, budget: int = 1 << 20):
    """Chunks of points with boxes of similar size around them, so that each chunk is one array operation.

    Yields (indices, rows (k, size), cols (k, size)), image coordinates of the box around each point.
    """
    order = np.argsort(reach, kind="stable")
    r = reach[order]
    start = 0
    while start < len(order):
        end = int(np.searchsorted(r, 1.2 * r[start] + 1, side="right"))
        end = min(end, start + max(1, budget // (2 * int(np.ceil(r[end - 1])) + 2) ** 2))
        half = int(np.ceil(r[end - 1]))
        idx = order[start:end]
        steps = np.arange(-half, half + 2)
        rows = np.floor(cy[idx]).astype(np.int64)[:, None] + steps
        yield idx, rows, np.floor(cx[idx]).astype(np.int64)[:, None] + steps
        start = end


def _in_image(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return ((rows >= 0) & (rows < shape[0]))[:, :, None] & ((cols >= 0) & (cols < shape[1]))[:, None, :]


def _pixels(shape: tuple[int, int], obj: _Objects, cy: np.ndarray, cx: np.ndarray, which: np.ndarray):
    """Pixels inside the given objects: flat pixel index, normalized radius (<= 1), object index."""
    f32 = np.float32
    out = [(np.empty(0, np.int64), np.empty(0, f32), np.empty(0, np.int64))]
    for k, rows, cols in _boxes(cy[which], cx[which], obj.reach()[which]):
        i = which[k]
        dy = (rows - cy[i, None]).astype(f32)[:, :, None]
        dx = (cols - cx[i, None]).astype(f32)[:, None, :]
        cos, sin = np.cos(obj.angle[i]).astype(f32)[:, None, None], np.sin(obj.angle[i]).astype(f32)[:, None, None]
        u = dx * cos + dy * sin
        v = dy * cos - dx * sin
        u *= (1 / obj.a[i]).astype(f32)[:, None, None]
        v *= (1 / obj.b[i]).astype(f32)[:, None, None]
        rho = np.sqrt(u * u + v * v)
        cos1 = u / np.maximum(rho, f32(1e-6))
        sin1 = v / np.maximum(rho, f32(1e-6))
        if obj.dent[i].any():
            # kidney: the outline pulled in around theta = 90 degrees, the middle of one long side
            rho /= 1 - obj.dent[i].astype(f32)[:, None, None] * np.maximum(sin1, 0) ** 8
        if obj.amplitude[i].any():
            # r(theta) = 1 + sum_k A_k cos(k theta + phase_k), cos and sin of k theta by recurrence
            a_cos = (obj.amplitude[i] * np.cos(obj.phase[i])).astype(f32)[:, :, None, None]
            a_sin = (obj.amplitude[i] * np.sin(obj.phase[i])).astype(f32)[:, :, None, None]
            radius = np.ones_like(rho)
            cos_k, sin_k = cos1 * cos1 - sin1 * sin1, 2 * sin1 * cos1
            for j in range(len(_ORDERS)):
                radius += a_cos[:, j] * cos_k - a_sin[:, j] * sin_k
                cos_k, sin_k = cos_k * cos1 - sin_k * sin1, sin_k * cos1 + cos_k * sin1
            rho /= np.maximum(radius, f32(0.2))
        inside = (rho <= 1) & _in_image(shape, rows, cols)
        n, y, x = np.nonzero(inside)
        out.append((rows[n, y] * shape[1] + cols[n, x], rho[inside], i[n]))
    return tuple(np.concatenate(column) for column in zip(*out))


def _paint(size: int, pix: np.ndarray, rho: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pixel to the object closest in normalized radius (pressed, not overlapping).

    Returns the owner per pixel (-1 none), its normalized radius, and which entries won their pixel.
    """
    best = np.full(size, np.inf, np.float32)
    np.minimum.at(best, pix, rho)
    won = rho <= best[pix]
    owner = np.full(size, -1, np.int64)
    owner[pix[won]] = which[won]
    return owner, best, won


def _members(starts: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Indices of the objects of the given groups (objects sorted by group, group g at starts[g]:starts[g + 1])."""
    counts = starts[groups + 1] - starts[groups]
    offsets = np.repeat(starts[groups] - np.cumsum(counts) + counts, counts)
    return offsets + np.arange(counts.sum())


def _place(shape: tuple[int, int], diameter: float, app: Appearance, rng: np.random.Generator):
    """Place the objects in rounds: all pending groups at once, then those that overlap too much again elsewhere.

    Returns the owner of each pixel (object index, -1 background), the normalized radius map, the objects and
    their centres.
    """
    if app.n_nuclei is not None:
        n = int(app.n_nuclei)
    else:
        typical_area = np.pi / 4 * diameter**2 * np.exp(2 * app.size_sigma**2)
        n = int(round(max(app.density, 0) * shape[0] * shape[1] / typical_area))
    obj = _objects(n, diameter, app, rng)
    size = shape[0] * shape[1]
    cy, cx = np.zeros(len(obj.a)), np.zeros(len(obj.a))
    starts = np.searchsorted(obj.group, np.arange(n + 1))
    area = np.pi * obj.a * obj.b
    accepted = np.zeros(n, bool)
    kept = [(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64))]
    for _ in range(6):
        pending = np.flatnonzero(~accepted)
        if not len(pending):
            break
        # Free groups anywhere; clumped ones pressed against an accepted object or a free group of this round.
        clump, pick, turn, squeeze, y, x = rng.random((6, len(pending)))
        free = pending[clump >= app.clump_fraction]
        if not len(free) and not accepted.any():
            free = pending[:1]
        clumped = np.setdiff1d(pending, free)
        gy, gx = np.zeros(n), np.zeros(n)
        gy[free], gx[free] = y[: len(free)] * shape[0], x[: len(free)] * shape[1]
        parents = np.flatnonzero(accepted[obj.group])
        if len(clumped) and len(free) + len(parents):
            parents = np.concatenate([parents, _members(starts, free)])
            k = len(clumped)
            parent = parents[(pick[:k] * len(parents)).astype(int)]
            parent_y = np.where(accepted[obj.group[parent]], cy[parent], gy[obj.group[parent]] + obj.oy[parent])
            parent_x = np.where(accepted[obj.group[parent]], cx[parent], gx[obj.group[parent]] + obj.ox[parent])
            phi = 2 * np.pi * turn[:k]
            single = starts[clumped + 1] - starts[clumped] == 1
            own = np.where(single, obj.radius_towards(starts[clumped], phi), 0.8 * obj.group_radius[clumped])
            dist = (obj.radius_towards(parent, phi) + own) * (0.85 + 0.15 * squeeze[:k])
            gy[clumped], gx[clumped] = parent_y + dist * np.sin(phi), parent_x + dist * np.cos(phi)
        members = _members(starts, pending)
        cy[members] = gy[obj.group[members]] + obj.oy[members]
        cx[members] = gx[obj.group[members]] + obj.ox[members]
        new = _pixels(shape, obj, cy, cx, members)
        pix, rho, which = (np.concatenate(c) for c in zip(*kept, new))
        owner, _, won = _paint(size, pix, rho, which)
        # Pixels claimed by two objects: too many of them (relative to the smaller one) and the later one moves.
        i, j = which[~won], owner[pix[~won]]
        pairs, shared = np.unique(np.minimum(i, j) * len(obj.a) + np.maximum(i, j), return_counts=True)
        first, second = pairs // len(obj.a), pairs % len(obj.a)
        bad = shared > MAX_OVERLAP * np.minimum(area[first], area[second])
        rejected = np.zeros(n, bool)
        rank = np.where(accepted[obj.group], -1, obj.group)
        first, second = first[bad], second[bad]
        swap = rank[first] > rank[second]
        first[swap], second[swap] = second[swap], first[swap]
        for e, later in zip(first[np.argsort(rank[second])], second[np.argsort(rank[second])]):
            ge, gl = obj.group[e], obj.group[later]
            if not accepted[gl] and not rejected[ge] and ge != gl:
                rejected[gl] = True
        accepted[pending[~rejected[pending]]] = True
        keep = accepted[obj.group[new[2]]]
        kept.append(tuple(column[keep] for column in new))
    pix, rho, which = (np.concatenate(c) for c in zip(*kept))
    owner, best, _ = _paint(size, pix, rho, which)
    return owner.reshape(shape), best.reshape(shape), obj, cy, cx


def _clean_labels(owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids 1..m for the objects of >= MIN_PIXELS, each reduced to its largest connected piece.

    ``owner`` holds object indices (-1 background). Returns the labels (uint32) and the object index of each id.
    """
    regions, n_regions = connected_regions(owner, background=-1, connectivity=1, return_num=True)
    flat = regions.ravel()
    region_owner = np.full(n_regions + 1, -1, np.int64)
    region_owner[flat] = owner.ravel()
    region_size = np.bincount(flat, minlength=n_regions + 1)
    # Per object its largest region, if large enough; other pieces go to the background.
    order = np.lexsort((-region_size[1:], region_owner[1:])) + 1
    largest = order[np.r_[True, region_owner[order][1:] != region_owner[order][:-1]]] if n_regions else order
    largest = largest[region_size[largest] >= MIN_PIXELS]
    index = region_owner[largest]
    sort = np.argsort(index)
    lut = np.zeros(n_regions + 1, np.uint32)
    lut[largest[sort]] = np.arange(1, len(largest) + 1, dtype=np.uint32)
    return lut[regions], index[sort]


def _gaussian_transfer(shape: tuple[int, int], sigmas: list[float], weights: list[float]) -> np.ndarray:
    """Real-FFT transfer function of a mixture of Gaussians."""
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    f2 = (fy**2 + fx**2).astype(np.float32)
    return sum(w * np.exp(np.float32(-2 * np.pi**2 * s**2) * f2) for s, w in zip(sigmas, weights))


def _blur(image: np.ndarray, sigmas: list[float], weights: list[float]) -> np.ndarray:
    """Convolve with a mixture of Gaussians (FFT, mirrored borders)."""
    pad = int(min(np.ceil(3 * max(sigmas)), min(image.shape) - 1))
    padded = np.pad(image, pad, mode="reflect")
    size = (sfft.next_fast_len(padded.shape[0], real=True), sfft.next_fast_len(padded.shape[1], real=True))
    spectrum = sfft.rfft2(padded, s=size) * _gaussian_transfer(size, sigmas, weights)
    out = sfft.irfft2(spectrum, s=size)
    return out[pad : pad + image.shape[0], pad : pad + image.shape[1]]


def _texture_field(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field with unit standard deviation: fine grains, chromatin domains, coarser patches."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    transfer = _gaussian_transfer(shape, [scale / 2.5, scale, 3 * scale], [0.3, 0.4, 0.3])
    field = sfft.irfft2(sfft.rfft2(noise) * transfer, s=shape)
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def _haze(shape: tuple[int, int], diameter: float, rng: np.random.Generator, modes: int = 8) -> np.ndarray:
    """Smooth random field with unit standard deviation: a few random waves across the image.

    Their periods are at least 4 nucleus diameters, so that the haze does not look like out-of-focus nuclei.
    """
    y = np.arange(shape[0])[:, None] / max(shape)
    x = np.arange(shape[1])[:, None] / max(shape)
    most = max(0.3, min(1.5, max(shape) / (4 * diameter)))
    cycles = rng.uniform(0.3, 1.0, modes) * most * 2 * np.pi
    direction = rng.uniform(0, 2 * np.pi, modes)
    phase = rng.uniform(0, 2 * np.pi, modes)
    # sum_k cos(ky_k y + kx_k x + p_k) = sum_k cos(ky_k y) cos(kx_k x + p_k) - sin(ky_k y) sin(kx_k x + p_k)
    wy = y * (cycles * np.sin(direction))
    wx = x * (cycles * np.cos(direction)) + phase
    field = np.hstack([np.cos(wy), -np.sin(wy)]) @ np.hstack([np.cos(wx), np.sin(wx)]).T
    return (field / np.sqrt(modes / 2)).astype(np.float32)


def _nucleoli(labels: np.ndarray, obj: _Objects, index: np.ndarray, cy, cx, mean: float, rng) -> np.ndarray:
    """Multiplicative map with dark round spots inside the interphase nuclei (Poisson number per nucleus)."""
    m = len(index)
    count = rng.poisson(mean, m) * (obj.kind[index] == NORMAL)
    ident = np.repeat(np.arange(1, m + 1), count)
    i = index[ident - 1]
    s = len(i)
    radius = np.sqrt(obj.a[i] * obj.b[i]) * rng.uniform(0.12, 0.25, s)
    depth = rng.uniform(0.25, 0.6, s)
    where, phi = 0.5 * np.sqrt(rng.random(s)), rng.uniform(0, 2 * np.pi, s)
    u, v = where * obj.a[i] * np.cos(phi), where * obj.b[i] * np.sin(phi)
    y = cy[i] + u * np.sin(obj.angle[i]) + v * np.cos(obj.angle[i])
    x = cx[i] + u * np.cos(obj.angle[i]) - v * np.sin(obj.angle[i])
    factor = np.ones(labels.size, np.float32)
    visible = np.flatnonzero(radius >= 1)
    for k, rows, cols in _boxes(y[visible], x[visible], 2 * radius[visible] + 1):
        k = visible[k]
        d2 = (rows - y[k, None])[:, :, None] ** 2 + (cols - x[k, None])[:, None, :] ** 2
        spot = 1 - depth[k, None, None] * np.exp(-((d2 / radius[k, None, None] ** 2) ** 2))
        inside = _in_image(labels.shape, rows, cols)
        n, r, c = np.nonzero(inside)
        pix = rows[n, r] * labels.shape[1] + cols[n, c]
        mine = labels.ravel()[pix] == ident[k][n]
        np.multiply.at(factor, pix[mine], spot[inside][mine].astype(np.float32))
    return factor.reshape(labels.shape)


def nuclei_image(
    shape: tuple[int, int] = (256, 256),
    diameter: float = 20.0,
    appearance: Appearance | None = None,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fluorescence image of nuclei and its ground truth labels.

    Parameters
    ----------
    shape : tuple
        Image shape (y, x).
    diameter : float
        Typical (median) equivalent diameter of a nucleus in pixels,
        2 * sqrt(area / pi); 6 to 120 work. Nuclei cut by the border and
        nuclei pressed against others are smaller.
    appearance : Appearance or None
        All the knobs; None draws :func:`random_appearance` from ``rng``.
    rng : Generator or int or None
        Random generator or seed; the same seed and appearance give the same image.

    Returns
    -------
    image : numpy.ndarray
        ``appearance.dtype`` (uint16 by default).
    labels : numpy.ndarray of uint32
        0 background, 1..n one id per object, every id present.

    Examples
    --------
    >>> image, labels = nuclei_image((128, 128), diameter=16, rng=0)
    >>> image.dtype.name, labels.dtype.name, image.shape
    ('uint16', 'uint32', (128, 128))
    >>> ids = np.unique(labels)
    >>> bool(np.array_equal(ids, np.arange(len(ids))))
    True
    >>> image, labels = nuclei_image((64, 64), 16, Appearance(n_nuclei=0), rng=0)
    >>> int(labels.max())
    0
    """
    rng = np.random.default_rng(rng)
    app = random_appearance(rng) if appearance is None else appearance
    if app.dtype not in _DTYPE_MAX:
        raise ValueError(f"dtype must be one of {sorted(_DTYPE_MAX)}, not {app.dtype!r}")
    shape = (int(shape[0]), int(shape[1]))
    # Separate streams: changing one knob (say the noise) leaves the rest of the image as it was.
    geometry_rng, object_rng, field_rng, noise_rng = (np.random.default_rng(s) for s in rng.integers(2**63, size=4))

    owner, rho, obj, cy, cx = _place(shape, diameter, app, geometry_rng)
    labels, index = _clean_labels(owner)
    m = len(index)

    scale = np.exp(app.brightness_sigma * object_rng.standard_normal(m))
    saturated_level = object_rng.uniform(1.2, 2.0)
    bright = np.zeros(m + 1, np.float32)
    bright[1:] = app.brightness * scale * obj.bright[index]
    # Saturation as in an over-exposed image: the exposure rises until the brightest objects clip, but the
    # background stays below a quarter of the full scale (a dim, low-contrast image cannot saturate its nuclei only).
    exposure = 1.0
    if app.saturated_fraction > 0 and m:
        exposure = saturated_level / float(np.quantile(bright[1:], 1 - min(app.saturated_fraction, 1)))
        exposure = max(1.0, min(exposure, 0.25 / max(app.background, 1e-9)))
    bright *= np.float32(exposure)
    texture = np.zeros(m + 1, np.float32)
    texture[1:] = app.texture * obj.texture[index]
    radius = np.ones(m + 1, np.float32)
    radius[1:] = np.sqrt(obj.a * obj.b)[index]

    inside = labels > 0
    r = np.where(inside, rho, 1).astype(np.float32)
    signal = np.float32(1 - app.dome) + np.float32(app.dome) * np.sqrt(np.clip(1 - r * r, 0, 1))
    if app.rim > 0:
        rim_width = np.maximum(0.8, 0.12 * radius[labels])
        signal += np.float32(app.rim) * np.exp(-(1 - r) * radius[labels] / rim_width)
    field = _texture_field(shape, max(app.texture_scale * diameter, 0.7), field_rng)
    if app.texture > 0:
        t = texture[labels]
        signal *= np.exp(t * field - t * t / 2)
    nucleoli = _nucleoli(labels, obj, index, cy, cx, max(app.nucleoli, 0), object_rng)
    signal *= nucleoli * bright[labels]
    # Touching nuclei: a dip along the contact (their surfaces curve away from each other).
    contact = np.zeros(shape, bool)
    down = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
    right = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    contact[1:] |= down
    contact[:-1] |= down
    contact[:, 1:] |= right
    contact[:, :-1] |= right
    if contact.any():
        width = max(0.7, 0.03 * diameter)
        # Normalized so that the middle of a straight contact (a line two pixels wide) dips fully.
        dip = ndi.gaussian_filter(contact.astype(np.float32), width) / np.float32(math.erf(1 / (np.sqrt(2) * width)))
        signal *= 1 - np.float32(0.4) * np.clip(dip, 0, 1)

    core = float(np.hypot(min(app.psf_sigma, 0.2 * diameter + 0.5), app.defocus * diameter))
    sigmas, weights = [core], [1 - app.halo]
    if app.halo > 0:
        sigmas.append(max(3 * core, 0.5 * diameter))
        weights.append(app.halo)
    image = _blur(signal, sigmas, weights) if m else signal

    yy = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    phi = field_rng.uniform(0, 2 * np.pi)
    tilt = 1 + app.gradient / 2 * (yy * np.sin(phi) + xx * np.cos(phi))
    illumination = np.clip(tilt * (1 - app.vignetting * (yy**2 + xx**2) / 2), 0.05, None)
    background = exposure * app.background * np.clip(1 + app.haze * _haze(shape, diameter, field_rng), 0.2, None)
    image = ((image + background) * illumination).astype(np.float32)

    if app.noise:
        per_unit = app.photons / max(exposure * app.brightness, 1e-9)  # photons per full-scale unit
        image = noise_rng.poisson(np.clip(image, 0, None) * per_unit).astype(np.float32) / np.float32(per_unit)
        image += noise_rng.standard_normal(shape, dtype=np.float32) * np.float32(app.read_noise / per_unit)
    image += np.float32(app.offset)
    if app.gamma != 1:
        ref = np.float32(exposure * (app.background + app.brightness))
        image = ref * (np.clip(image, 0, None) / ref) ** np.float32(app.gamma)
    image = np.clip(image, 0, 1)
    if app.dtype == "float32":
        return image.astype(np.float32), labels
    return np.rint(image * _DTYPE_MAX[app.dtype]).astype(app.dtype), labels
