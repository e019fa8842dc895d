"""Where the synthetic nuclei are: shapes, placement without overlap, and the ground-truth labels.

Steps 1 and 2 of :mod:`batchlib.synthetic_nuclei` (which renders the image
from these labels): objects (normal nuclei, mitoses, anaphase pairs,
apoptotic fragments) are drawn as arrays, placed at random or pressed against
another, each pixel given to the object whose centre is nearer in normalized
radius, and the result cleaned into labels 1..n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from skimage.measure import label as connected_regions

if TYPE_CHECKING:
    from .synthetic_nuclei import Appearance

NORMAL, MITOTIC, PAIR, APOPTOTIC = 0, 1, 2, 3
MIN_PIXELS = 4
# A new object may share at most this fraction of the smaller object's area with an earlier one.
MAX_OVERLAP = 0.2


_ORDERS = np.arange(2, 8)  # harmonics of the outline perturbation
_FIELDS = ("group", "oy", "ox", "a", "b", "angle", "dent", "amplitude", "phase", "kind", "bright", "texture")


@dataclass
class Objects:
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


def _objects(n: int, diameter: float, app: Appearance, rng: np.random.Generator) -> Objects:
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
    return Objects(**merged, group_radius=group_radius)


def pixel_boxes(cy: np.ndarray, cx: np.ndarray, reach: np.ndarray, budget: int = 1 << 20):
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


def in_image(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return ((rows >= 0) & (rows < shape[0]))[:, :, None] & ((cols >= 0) & (cols < shape[1]))[:, None, :]


def _pixels(shape: tuple[int, int], obj: Objects, cy: np.ndarray, cx: np.ndarray, which: np.ndarray):
    """Pixels inside the given objects: flat pixel index, normalized radius (<= 1), object index."""
    f32 = np.float32
    out = [(np.empty(0, np.int64), np.empty(0, f32), np.empty(0, np.int64))]
    for k, rows, cols in pixel_boxes(cy[which], cx[which], obj.reach()[which]):
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
        inside = (rho <= 1) & in_image(shape, rows, cols)
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


def place_objects(shape: tuple[int, int], diameter: float, app: Appearance, rng: np.random.Generator):
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


def clean_labels(owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
