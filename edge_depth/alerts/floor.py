"""Metric scale from the floor: where a fixed camera sees a flat floor, its geometry gives every floor pixel's
distance, and that pins down MiDaS's unknown per-frame scale and shift without any measured point.

Geometry. Camera coordinates: x right, y down, z along the optical axis; depth Z is measured along z (as
MiDaS's and RGB-D sensors' depth is). The camera is ``height_m`` above the floor, pitched down by ``tilt``
(theta) and rolled by ``roll`` (phi) about its optical axis. The unit vector pointing straight down is then

    g = (sin(phi) cos(theta), cos(phi) cos(theta), sin(theta))

and the ray through a pixel is r = (x_n, y_n, 1) with x_n = (u - c_x) / f and y_n = (v - c_y) / f (pixel
centres, square pixels, f the focal length in pixels). The ray meets the floor (g . X = h) at

    Z = h / (g . r),  so without roll  Z(v) = h / (sin(theta) + ((v - c_y) / f) cos(theta)),

for rays below the horizon (g . r > 0) only. Its inverse, 1/Z = (g . r) / h, is linear in the pixel position.
Positive roll = the camera turned clockwise as seen from behind it: level lines in the image rise to the right.

Fit. MiDaS gives d = s / Z + t with unknown s, t per frame, so 1/Z = a d + b. Over the floor polygon's pixels
(on the subsampled grid), the pairs (d, 1/Z_floor) lie on that line except where something stands on the
floor: such pixels are nearer than the floor (1/Z above the line) and would drag a plain least-squares fit.
RANSAC finds the line most floor pixels agree with (relative distance error within ``tolerance``), then a
least-squares fit on those inliers (weighted by Z^2, so it minimises relative distance errors) gives a, b.

Pure numpy; no state between frames besides the per-shape cache of floor pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_depth.alerts.zones import polygon_mask
from edge_depth.depthstats import GRID_STRIDE

Point = tuple[float, float]

MIN_FLOOR_PIXELS = 32  # inliers on the subsampled grid a floor fit needs
MAX_FLOOR_DISTANCE_M = 30.0  # floor farther than this (near the horizon) is too thin in the image to sample
# The inliers' distances must span this ratio (90th / 10th percentile): a floor seen over too narrow a band of
# distances fixes a * d + b at one distance only, not the scale and the shift apart.
MIN_FLOOR_SPAN = 1.2
MIN_FLOOR_EXPLAINED = 0.8  # share of the inliers' variance of 1/Z the line must explain (R squared)
_PAIRS = 128  # RANSAC hypotheses per frame: with half the floor pixels inliers, P(no clean pair) = 0.75^128
_REFITS = 2  # least-squares refits on the inliers after RANSAC
_LINE_POINTS = 2  # points that define a line


def focal_from_vfov(vfov_deg: float) -> float:
    """Vertical focal length in image heights (f_y / H) of a camera with vertical field of view ``vfov_deg``."""
    return 0.5 / math.tan(math.radians(vfov_deg) / 2)


@dataclass(frozen=True, slots=True)
class FloorCamera:
    """A fixed camera above a flat floor.

    ``height_m``: the optical centre's height above the floor (m). ``tilt_deg``: pitch below horizontal
    (degrees; 0 = looking straight ahead, 90 = straight down). ``roll_deg``: rotation about the optical axis
    (degrees, positive = clockwise seen from behind the camera). ``focal``: vertical focal length in image
    heights (f_y / H, so it holds at any resolution of the same view). ``centre_y``: principal point row,
    normalised (0 = top edge, 1 = bottom edge). The principal point's column is the image centre.
    """

    height_m: float
    tilt_deg: float
    focal: float
    roll_deg: float = 0.0
    centre_y: float = 0.5

    def down(self) -> np.ndarray:
        """(3,) float64 unit vector pointing straight down, in camera coordinates (x right, y down, z forward)."""
        tilt, roll = math.radians(self.tilt_deg), math.radians(self.roll_deg)
        return np.array([math.sin(roll) * math.cos(tilt), math.cos(roll) * math.cos(tilt), math.sin(tilt)])

    def inverse_depth(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) float64 inverse depth (1/m) of the floor at each pixel centre of an image of ``shape``.

        Zero or negative at and above the horizon, where a ray never meets the floor. Pixels are taken as
        square: the model's input keeps the camera's aspect ratio (to within its size multiple), and only
        roll uses the horizontal direction.
        """
        height, width = shape
        f = self.focal * height  # pixels of this image
        x = (np.arange(width) + 0.5 - width / 2) / f
        y = (np.arange(height) + 0.5 - self.centre_y * height) / f
        gx, gy, gz = self.down()
        inverse: np.ndarray = (gx * x[None, :] + gy * y[:, None] + gz) / self.height_m
        return inverse


@dataclass(frozen=True, slots=True)
class LineFit:
    """``y = slope * x + intercept`` and its ``inliers``, (N,) bool over the points it was fitted to."""

    slope: float
    intercept: float
    inliers: np.ndarray


def weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float] | None:
    """Weighted least-squares (slope, intercept) of y = slope * x + intercept over (N,) float64 arrays; None
    when x has no spread under the weights."""
    total = float(w.sum())
    if not total > 0:
        return None
    mx, my = float(np.dot(w, x)) / total, float(np.dot(w, y)) / total
    dx = x - mx
    var = float(np.dot(w, dx * dx))
    if not var > 0:
        return None
    slope = float(np.dot(w, dx * (y - my))) / var
    return slope, my - slope * mx


def relative_error(slope: float, intercept: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|fitted / true - 1| of inverse distances y > 0 (N,): about the relative error of the distance."""
    return np.asarray(np.abs((slope * x + intercept) / y - 1.0))


def robust_line(
    x: np.ndarray,
    y: np.ndarray,
    *,
    tolerance: float,
    rng: np.random.Generator,
    pairs: int = _PAIRS,
    beyond_weight: float = 2.0,
) -> LineFit | None:
    """The increasing line through most of the points (x, y), y > 0: RANSAC, then least squares on its inliers.

    ``x``: (N,) float64 model depths; ``y``: (N,) float64 true inverse distances (1/m). A point is an inlier
    when the line's inverse distance is within ``tolerance`` (relative) of its own. The hypotheses are lines
    through ``pairs`` random pairs of points; the one with most inliers wins (ties: smaller total error).
    The least-squares fits weight each point by 1/y^2, i.e. minimise relative rather than absolute errors, so
    the near floor (large 1/Z) does not outweigh the far floor. None when no increasing line has two inliers.
    """
    n = x.size
    if n < _LINE_POINTS:
        return None
    i = rng.integers(0, n, pairs)
    j = rng.integers(0, n, pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (y[i] - y[j]) / (x[i] - x[j])
        intercept = y[i] - slope * x[i]
    usable = np.isfinite(slope) & (slope > 0)
    if not usable.any():
        return None
    slope, intercept = slope[usable], intercept[usable]
    signed = (slope[:, None] * x[None, :] + intercept[:, None]) / y[None, :] - 1.0
    error = np.abs(signed)
    agree = error <= tolerance
    # Inside a floor polygon nothing can be farther than the floor (whatever stands on it is nearer), but a
    # line through a table top or a bed calls the visible floor "farther": each such pixel costs two inliers,
    # so a horizontal surface must cover twice the visible floor to win.
    counts = agree.sum(axis=1) - beyond_weight * (signed < -tolerance).sum(axis=1)
    total = np.where(agree, error, 0.0).sum(axis=1)
    best = int(np.lexsort((total, -counts))[0])
    inliers = agree[best]
    line: tuple[float, float] | None = (float(slope[best]), float(intercept[best]))
    for _ in range(_REFITS):
        if np.count_nonzero(inliers) < _LINE_POINTS:
            return None
        line = weighted_line(x[inliers], y[inliers], 1.0 / y[inliers] ** 2)
        if line is None or line[0] <= 0:
            return None
        inliers = relative_error(line[0], line[1], x, y) <= tolerance
    assert line is not None
    return LineFit(line[0], line[1], inliers)


@dataclass(frozen=True, slots=True)
class FloorPixels:
    """The floor polygon's usable pixels at one depth shape, on the subsampled grid.

    ``flat``: (N,) int64 indices into the raveled (H, W) depth map; ``inverse``: (N,) float64 the floor's
    inverse depth there (1/m, > 0). Pixels above the horizon or beyond ``MAX_FLOOR_DISTANCE_M`` are left out.
    """

    flat: np.ndarray
    inverse: np.ndarray


@dataclass(frozen=True, slots=True)
class FloorFit:
    """``1/Z = a * d + b`` from the floor of one frame.

    ``inliers``: floor pixels (subsampled grid) that agree with the line; ``pixels``: floor pixels with a
    finite depth. ``depth`` and ``inverse``: (inliers,) float64 the inliers' model depth and their floor
    inverse distance (1/m), for a joint fit with reference points.
    """

    a: float
    b: float
    inliers: int
    pixels: int
    depth: np.ndarray = field(repr=False)
    inverse: np.ndarray = field(repr=False)


class FloorModel:
    """Fits each frame's scale and shift to the floor seen through ``polygon`` (normalised corners).

    ``tolerance``: relative distance error within which a floor pixel agrees with a line. ``min_inliers``:
    fraction of the floor pixels that must agree (less, and too much of the floor is covered to trust it).
    Deterministic: the same frame always gives the same fit.
    """

    def __init__(
        self,
        camera: FloorCamera,
        polygon: Sequence[Point],
        *,
        tolerance: float = 0.1,
        min_inliers: float = 0.3,
        seed: int = 0,
    ) -> None:
        self.camera = camera
        self._polygon = tuple((float(x), float(y)) for x, y in polygon)
        self._tolerance = tolerance
        self._min_inliers = min_inliers
        self._seed = seed
        self._pixels: dict[tuple[int, int], FloorPixels] = {}

    def pixels(self, shape: tuple[int, int]) -> FloorPixels:
        """The floor's usable grid pixels at ``shape`` (built once per shape)."""
        cached = self._pixels.get(shape)
        if cached is None:
            inverse = self.camera.inverse_depth(shape)
            use = polygon_mask(self._polygon, shape) & (inverse >= 1.0 / MAX_FLOOR_DISTANCE_M)
            on_grid = np.zeros(shape, bool)
            on_grid[::GRID_STRIDE, ::GRID_STRIDE] = True
            flat = np.flatnonzero(use & on_grid)
            cached = FloorPixels(flat, inverse.ravel()[flat])
            cached.flat.flags.writeable = False
            cached.inverse.flags.writeable = False
            self._pixels[shape] = cached
        return cached

    def fit(self, depth: np.ndarray) -> FloorFit | None:
        """The floor's fit for one (H, W) float32 depth map; None when too little floor agrees with any line
        or its inliers span too narrow a band of distances."""
        floor = self.pixels((depth.shape[0], depth.shape[1]))
        d = depth.ravel()[floor.flat].astype(np.float64)
        finite = np.isfinite(d)
        d, inverse = d[finite], floor.inverse[finite]
        if d.size < MIN_FLOOR_PIXELS:
            return None
        line = robust_line(d, inverse, tolerance=self._tolerance, rng=np.random.default_rng(self._seed))
        if line is None:
            return None
        count = int(np.count_nonzero(line.inliers))
        if count < max(MIN_FLOOR_PIXELS, self._min_inliers * d.size):
            return None
        x, y = d[line.inliers], inverse[line.inliers]
        near, far = np.percentile(y, (90.0, 10.0))
        if near < MIN_FLOOR_SPAN * far:
            return None
        # The inliers must follow the line, not merely lie within the tolerance band around it: a wall at one
        # depth across the floor polygon "agrees" with a flat line over a band of floor rows.
        residual = line.slope * x + line.intercept - y
        if float(np.sum(residual**2)) > (1.0 - MIN_FLOOR_EXPLAINED) * float(np.sum((y - y.mean()) ** 2)):
            return None
        return FloorFit(line.slope, line.intercept, count, int(d.size), x, y)
