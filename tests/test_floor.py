"""Metric depth from the floor: the geometry, the robust fit, and the error on real RGB-D frames.

The real frames (``tests/fixtures/nyu``: NYU Depth v2; ``tests/fixtures/rgbd``: Open3D's sequence, TUM and SUN
RGB-D frames) come without the camera's height and tilt. They are estimated from the ground truth: the depth
is back-projected with the sensor's intrinsics (NYU's published calibration; the PrimeSense default, f = 525 px
at 640x480, for the others, as Open3D uses for them), surface normals of the facing-up pixels give the down
direction, the lowest horizontal layer with enough pixels is the floor, and a plane fitted to it (least
squares, three rounds of 2 cm / 2 % inliers) gives the height (its distance from the optical centre), the tilt
and the roll. A wrong focal length would not matter here: it maps the floor onto another plane that gives the
same depths. The floor polygons are drawn by hand on the colour images, as a user would draw them, with the
chairs, legs and beds that stand on the floor inside them.

Floor seen in these frames: NYU 00065 (a strip by the door, 4 % of the image), 00122 (between classroom desks:
17 % of its polygon), 00438 (under the desk chair), 00439, 00445, 00543 (most of the lower half), Open3D
sequence 00000 and 00004 (the bottom third), TUM (under the desk and chairs) and SUN (the corridor).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from pydantic import ValidationError

from edge_depth.alerts.floor import FloorCamera, FloorModel, focal_from_vfov, robust_line
from edge_depth.alerts.reference import floor_model
from edge_depth.config.alerts import FloorConfig, ReferenceConfig
from tests.support.scenes import FIXTURES, NYU_FRAMES, MidasLike, Scene, load_scene

Point = tuple[float, float]
SENSOR_ROWS = 480  # every RGB-D frame here is 640x480
NYU_FY, NYU_CY = 519.469611, 253.736166  # NYU Depth v2's colour camera calibration (pixels at 640x480)
PRIMESENSE_FY, PRIMESENSE_CY = 525.0, 239.5


@dataclass(frozen=True)
class FloorScene:
    """A real scene with its hand-drawn floor polygon and the intrinsics of its sensor (pixels at 640x480)."""

    name: str
    polygon: tuple[Point, ...]
    fy: float
    cy: float


def _nyu(n: str, *polygon: Point) -> FloorScene:
    return FloorScene(f"nyu_{n}", polygon, NYU_FY, NYU_CY)


def _primesense(name: str, *polygon: Point) -> FloorScene:
    return FloorScene(name, polygon, PRIMESENSE_FY, PRIMESENSE_CY)


FLOORS = {
    s.name: s
    for s in (
        _nyu("00065", (0.63, 1.0), (0.68, 0.7), (0.77, 0.53), (0.87, 0.53), (0.83, 0.66), (0.82, 1.0)),
        _nyu("00122", (0.0, 0.62), (1.0, 0.62), (1.0, 1.0), (0.0, 1.0)),
        _nyu("00438", (0.35, 1.0), (0.35, 0.65), (0.78, 0.62), (0.95, 0.78), (0.95, 1.0)),
        _nyu("00439", (0.2, 0.62), (0.6, 0.55), (0.95, 0.72), (0.95, 1.0), (0.3, 1.0)),
        _nyu("00445", (0.02, 0.55), (0.45, 0.5), (0.65, 0.6), (0.7, 1.0), (0.02, 1.0)),
        _nyu("00543", (0.05, 0.3), (0.95, 0.35), (0.95, 1.0), (0.05, 1.0)),
        _primesense("sequence_00000", (0.0, 0.7), (0.95, 0.7), (0.95, 1.0), (0.0, 1.0)),
        _primesense("sequence_00004", (0.0, 0.7), (0.95, 0.7), (0.95, 1.0), (0.0, 1.0)),
        _primesense("tum", (0.02, 0.58), (0.95, 0.58), (0.95, 0.97), (0.02, 0.97)),
        _primesense("sun", (0.18, 1.0), (0.38, 0.6), (0.52, 0.6), (0.78, 0.88), (0.78, 1.0)),
    )
}
CLASSROOM = "nyu_00122"  # the floor is mostly hidden by desks, whose tops are a larger horizontal plane
VISIBLE_FLOORS = tuple(name for name in FLOORS if name != CLASSROOM)


@dataclass(frozen=True)
class GroundTruthFloor:
    """The floor found in a scene's ground truth: ``camera`` (height, tilt, roll, focal, principal row) and
    ``mask`` (H, W) bool, the measured pixels within 2 cm (or 2 % of their depth) of the floor plane."""

    camera: FloorCamera
    mask: np.ndarray


def _back_project(scene: Scene, fy: float, cy: float) -> np.ndarray:
    """(H, W, 3) float64 camera coordinates (m; x right, y down, z forward) of every pixel of ``scene``."""
    height, width = scene.inverse.shape
    f = fy * height / SENSOR_ROWS
    centre_y = (cy + 0.5) * height / SENSOR_ROWS
    v, u = np.mgrid[0:height, 0:width] + 0.5
    z = scene.metres.astype(np.float64)
    return np.stack([(u - width / 2) / f * z, (v - centre_y) / f * z, z], axis=-1)


def _normals(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) unit normals oriented with +y (facing-up surfaces point down the image's y) and where they
    are defined (measured pixel with measured neighbours)."""
    dx, dy = np.zeros_like(points), np.zeros_like(points)
    dx[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dy[1:-1] = points[2:] - points[:-2]
    normal = np.cross(dx, dy)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    normal = np.where(normal[..., 1:2] < 0, -normal, normal)
    defined = valid.copy()
    defined[1:-1, 1:-1] &= valid[:-2, 1:-1] & valid[2:, 1:-1] & valid[1:-1, :-2] & valid[1:-1, 2:]
    defined[[0, -1]], defined[:, [0, -1]] = False, False
    return normal, defined


@cache
def ground_truth_floor(name: str) -> GroundTruthFloor:
    """The floor plane of a scene's ground truth, and the camera it implies (see the module docstring)."""
    spec, scene = FLOORS[name], load_scene(name)
    points = _back_project(scene, spec.fy, spec.cy)
    normal, defined = _normals(points, scene.valid)
    facing_up = defined & (normal[..., 1] > 0.6)
    down = np.median(normal[facing_up], axis=0)
    for _ in range(3):
        facing_up = defined & (normal @ (down / np.linalg.norm(down)) > 0.95)
        down = normal[facing_up].mean(axis=0)
    down /= np.linalg.norm(down)
    # The floor is the lowest horizontal layer that holds a real share of the pixels (table tops are higher).
    heights = points[facing_up] @ down
    counts, edges = np.histogram(heights, bins=np.arange(0.0, 6.0, 0.05))
    lowest = int(np.nonzero(counts >= max(0.01 * scene.valid.size, 0.1 * counts.max()))[0].max())
    mask = scene.valid & (np.abs(points @ down - (edges[lowest] + edges[lowest + 1]) / 2) < 0.1)
    for _ in range(3):
        on_floor = points[mask]
        centre = on_floor.mean(axis=0)
        down = np.linalg.svd(on_floor - centre, full_matrices=False)[2][2]
        down = -down if down[1] < 0 else down
        height_m = float(centre @ down)
        mask = scene.valid & (np.abs(points @ down - height_m) < np.maximum(0.02, 0.02 * points[..., 2]))
    camera = FloorCamera(
        height_m=height_m,
        tilt_deg=float(np.degrees(np.arcsin(down[2]))),
        focal=spec.fy / SENSOR_ROWS,
        roll_deg=float(np.degrees(np.arctan2(down[0], down[1]))),
        centre_y=(spec.cy + 0.5) / SENSOR_ROWS,
    )
    mask.flags.writeable = False
    return GroundTruthFloor(camera, mask)


@dataclass(frozen=True)
class Errors:
    """Relative distance errors |estimate - truth| / truth on the measured pixels: median and 90th percentile,
    on the ground-truth floor and elsewhere."""

    floor_median: float
    floor_p90: float
    other_median: float
    other_p90: float


def errors(distance: np.ndarray, scene: Scene, floor: np.ndarray) -> Errors:
    error = np.abs(distance - scene.metres) / scene.metres
    on, off = error[floor & scene.valid], error[~floor & scene.valid]
    return Errors(
        float(np.median(on)), float(np.percentile(on, 90)), float(np.median(off)), float(np.percentile(off, 90))
    )


def floor_errors(name: str, depth: np.ndarray, *, tilt_error_deg: float = 0.0) -> Errors | None:
    """Errors of the floor fit of ``depth`` for scene ``name`` (None when the floor could not calibrate it)."""
    truth = ground_truth_floor(name)
    camera = truth.camera
    if tilt_error_deg:
        camera = FloorCamera(
            camera.height_m, camera.tilt_deg + tilt_error_deg, camera.focal, camera.roll_deg, camera.centre_y
        )
    fit = FloorModel(camera, FLOORS[name].polygon).fit(depth)
    if fit is None:
        return None
    inverse = fit.a * depth.astype(np.float64) + fit.b
    with np.errstate(divide="ignore"):
        distance = np.where(inverse > 0, 1.0 / inverse, np.inf)
    return errors(distance, load_scene(name), truth.mask)


def recorded_midas(name: str) -> np.ndarray:
    """The recorded MiDaS v2.1 small output (float, CPU) of an NYU frame: (192, 256) float32."""
    n = name.removeprefix("nyu_")
    disparity: np.ndarray = np.load(FIXTURES / "nyu" / "midas_small_reference" / f"cpu_disp_{n}.npy")
    return disparity.astype(np.float32)


# -- geometry -------------------------------------------------------------------------------------------


def test_floor_depth_follows_the_pinhole_formula() -> None:
    camera = FloorCamera(height_m=2.5, tilt_deg=30.0, focal=focal_from_vfov(60.0), centre_y=0.5)
    shape = (192, 256)
    inverse = camera.inverse_depth(shape)
    f, c_y, theta = camera.focal * 192, 96.0, np.radians(30.0)
    v = np.arange(192) + 0.5
    expected = 2.5 / (np.sin(theta) + (v - c_y) / f * np.cos(theta))
    below = expected > 0
    np.testing.assert_allclose(1.0 / inverse[below, 100], expected[below], rtol=1e-9)
    assert (inverse[~below] <= 0).all()  # above the horizon the ray never meets the floor
    # The principal row looks down by the tilt: Z = h / sin(theta) = 5 m along the axis.
    assert 1.0 / camera.inverse_depth((3, 3))[1, 1] == pytest.approx(5.0)
    # Constant along a row without roll; vertical FOV 60 degrees -> f = 0.866 image heights.
    assert np.ptp(inverse[150]) == 0
    assert focal_from_vfov(60.0) == pytest.approx(0.5 / np.tan(np.radians(30.0)))


def test_positive_roll_makes_level_lines_rise_to_the_right() -> None:
    camera = FloorCamera(height_m=2.0, tilt_deg=0.0, focal=1.0, roll_deg=10.0)
    inverse = camera.inverse_depth((192, 256))
    horizon = (inverse > 0).argmax(axis=0)  # first row below the horizon, per column
    assert horizon[-1] < horizon[0]
    assert np.degrees(np.arctan((horizon[0] - horizon[-1]) / 256)) == pytest.approx(10.0, abs=0.5)


# -- the robust fit ----------------------------------------------------------------------------------------


def synthetic_floor(
    shape: tuple[int, int] = (192, 256),
) -> tuple[FloorCamera, tuple[Point, ...], np.ndarray]:
    """A camera 2 m up, tilted 25 degrees, 55 degree vertical FOV; its floor polygon (bottom 40 %) and the
    floor's true inverse depth (H, W) float64."""
    camera = FloorCamera(height_m=2.0, tilt_deg=25.0, focal=focal_from_vfov(55.0))
    return camera, ((0.0, 0.6), (1.0, 0.6), (1.0, 1.0), (0.0, 1.0)), camera.inverse_depth(shape)


def test_objects_on_the_floor_do_not_bend_the_fit() -> None:
    camera, polygon, inverse = synthetic_floor()
    scene = inverse.copy()
    scene[110:192, 40:120] = np.maximum(scene[110:192, 40:120], 1 / 1.5)  # a box 1.5 m away standing on the floor
    depth = (scene * 400 + 30).astype(np.float32)  # MiDaS-like: inverse depth x 400 + 30
    fit = FloorModel(camera, polygon).fit(depth)
    assert fit is not None
    assert fit.a == pytest.approx(1 / 400, rel=1e-4) and fit.b == pytest.approx(-30 / 400, rel=1e-3)
    assert 0.5 < fit.inliers / fit.pixels < 0.9  # the box's pixels were left out
    # Least squares alone would have taken the box for floor.
    floor = FloorModel(camera, polygon).pixels(inverse.shape)
    d = depth.ravel()[floor.flat].astype(np.float64)
    plain = np.polyfit(d, floor.inverse, 1)
    assert abs(plain[0] * 400 - 1) > 0.1


def test_a_table_top_bigger_than_the_visible_floor_is_not_taken_for_the_floor() -> None:
    """A horizontal table top at 0.75 m fits some line as well as the floor does (its depths are the floor's
    scaled by h / (h - 0.75)), but would put the visible floor beyond the floor: impossible, so rejected."""
    camera, polygon, inverse = synthetic_floor()
    table = FloorCamera(camera.height_m - 0.75, camera.tilt_deg, camera.focal).inverse_depth(inverse.shape)
    scene = inverse.copy()
    scene[:, 40:240] = np.where(np.arange(192)[:, None] < 180, table[:, 40:240], scene[:, 40:240])
    depth = (scene * 400 + 30).astype(np.float32)
    fit = FloorModel(camera, polygon, min_inliers=0.2).fit(depth)
    assert fit is not None
    assert fit.a == pytest.approx(1 / 400, rel=1e-3)
    assert fit.inliers / fit.pixels < 0.4  # the table took 60 % of the polygon


def test_a_covered_floor_or_one_above_the_horizon_calibrates_nothing() -> None:
    camera, polygon, inverse = synthetic_floor()
    covered = inverse.copy()
    covered[100:, 20:240] = 1 / 1.2  # a wall of boxes over 85 % of the floor polygon
    assert FloorModel(camera, polygon).fit((covered * 400 + 30).astype(np.float32)) is None
    sky = FloorModel(camera, ((0.0, 0.0), (1.0, 0.0), (1.0, 0.04), (0.0, 0.04)))  # the horizon is at 0.052
    assert sky.pixels(inverse.shape).flat.size == 0
    assert sky.fit((inverse * 400 + 30).astype(np.float32)) is None
    # A polygon over a narrow band of distances cannot separate the scale from the shift.
    band = FloorModel(camera, ((0.0, 0.9), (1.0, 0.9), (1.0, 0.94), (0.0, 0.94)))
    assert band.fit((inverse * 400 + 30).astype(np.float32)) is None


def test_robust_line_is_deterministic_and_rejects_decreasing_data() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 500)
    y = 2 * x + 0.5
    a = robust_line(x, y, tolerance=0.05, rng=np.random.default_rng(1))
    b = robust_line(x, y, tolerance=0.05, rng=np.random.default_rng(1))
    assert a is not None and b is not None and (a.slope, a.intercept) == (b.slope, b.intercept)
    assert robust_line(x, 3 - 2 * x, tolerance=0.05, rng=np.random.default_rng(1)) is None


def test_floor_config_rules() -> None:
    floor = {"camera_height_m": 2.0, "tilt_deg": 20.0, "polygon": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]}
    assert FloorConfig.model_validate(floor | {"vfov_deg": 60}).focal() == pytest.approx(focal_from_vfov(60))
    cfg = FloorConfig.model_validate(floor | {"focal_px": 519.5, "image_height_px": 480})
    assert cfg.focal() == pytest.approx(519.5 / 480)
    assert floor_model(cfg).camera.focal == pytest.approx(519.5 / 480)
    for bad, message in (
        ({}, "exactly one of vfov_deg and focal_px"),
        ({"vfov_deg": 60, "focal_px": 500, "image_height_px": 480}, "exactly one of vfov_deg and focal_px"),
        ({"focal_px": 500}, "focal_px and floor.image_height_px go together"),
        ({"vfov_deg": 60, "image_height_px": 480}, "focal_px and floor.image_height_px go together"),
        ({"vfov_deg": 60, "polygon": [[0, 0.5], [0.5, 0.5], [1, 0.5]]}, "encloses no area"),
        ({"vfov_deg": 60, "polygon": [[0, 0.5], [1, 1]]}, "at least 3 items"),
        ({"vfov_deg": 60, "tilt_deg": 95}, "less than or equal to 90"),
        ({"vfov_deg": 200}, "less than 170"),
        ({"vfov_deg": 60, "camera_height_m": 0}, "greater than 0.1"),
    ):
        with pytest.raises(ValidationError, match=message):
            FloorConfig.model_validate(floor | bad)
    # Metric mode needs points or a floor.
    ReferenceConfig.model_validate({"mode": "metric", "metric": {"floor": floor | {"vfov_deg": 60}}})
    with pytest.raises(ValidationError, match=r"or a metric\.floor"):
        ReferenceConfig.model_validate({"mode": "metric"})


# -- real frames ------------------------------------------------------------------------------------------


def test_ground_truth_floors_are_found() -> None:
    """The estimated cameras: NYU's handheld Kinect at 1.2-1.5 m, tilted 9-28 degrees down; Open3D's
    sequence at 0.46-0.55 m, nearly level; TUM at 1.8 m, 30 degrees down; SUN at 1.1 m, nearly level."""
    for name in FLOORS:
        truth = ground_truth_floor(name)
        assert 0.4 < truth.camera.height_m < 2.0, name
        assert 0 < truth.camera.tilt_deg < 35, name
        assert abs(truth.camera.roll_deg) < 6, name
        assert truth.mask.mean() > 0.06, name  # at least 6 % of the image is floor
    assert ground_truth_floor("tum").camera.height_m == pytest.approx(1.81, abs=0.02)


@pytest.mark.parametrize("name", VISIBLE_FLOORS)
def test_floor_metres_on_real_frames_with_midas_like_depth(name: str) -> None:
    """True inverse depth x a random scale (800 x 1.25^U(-1, 1)) + a random shift (+-10 % of the range) + 1 %
    noise, five frames, calibrated by the floor alone (camera from the ground truth, polygon by hand).

    Median / 90th percentile relative error, on the floor and on all other measured pixels (seed 7, first
    frame): NYU 00065 1.1/2.9 % and 1.0/2.8 %, 00438 2.5/4.8 % and 5.4/9.3 %, 00439 0.8/2.0 % and 0.9/2.3 %,
    00445 1.7/4.6 % and 1.9/6.1 %, 00543 1.1/3.0 % and 1.2/3.8 %, Open3D sequence 00000 0.7/1.8 % and
    1.1/2.8 %, 00004 0.7/1.6 % and 0.8/2.0 %, TUM 1.0/2.5 % and 1.1/2.6 %, SUN 1.8/5.1 % and 1.3/4.6 %.
    """
    midas = MidasLike(np.random.default_rng(7))
    scene = load_scene(name)
    for _ in range(5):
        result = floor_errors(name, midas(scene.inverse))
        assert result is not None
        assert result.floor_median < 0.03 and result.floor_p90 < 0.07
        assert result.other_median < 0.06 and result.other_p90 < 0.12


def test_a_floor_hidden_by_desks_is_uncalibrated_rather_than_wrong() -> None:
    """The classroom: desks cover 83 % of the floor polygon and their tops are one horizontal plane. Where a
    frame's floor pixels fall short of ``min_inliers`` it stays uncalibrated (3 of these 5 frames); a fit that
    comes out is the floor's (1.2 % median error on the floor, 1.5 % elsewhere), not the desks' (those would
    put the visible floor beyond the floor)."""
    midas = MidasLike(np.random.default_rng(7))
    scene = load_scene(CLASSROOM)
    outcomes = [floor_errors(CLASSROOM, midas(scene.inverse)) for _ in range(5)]
    assert any(o is None for o in outcomes)
    assert all(o.floor_median < 0.05 and o.other_median < 0.06 for o in outcomes if o is not None)


def test_floor_metres_on_real_midas_small_outputs() -> None:
    """The recorded MiDaS v2.1 small outputs of the six NYU frames, calibrated by the floor alone.

    Median / 90th percentile relative error on the floor, then on the other measured pixels:

    ===== ============== ============== ===================
    frame floor          elsewhere      best single fit
    ===== ============== ============== ===================
    00065  2.1 /  5.9 %   7.5 / 27.6 %   5.3 % and  6.3 %
    00122  4.8 / 13.8 %  21.5 / 124 %    9.8 % and 14.6 %
    00438  5.4 / 10.1 %  25.1 / 52.9 %  11.4 % and 15.8 %
    00439  1.3 /  4.1 %  10.3 / 20.5 %   4.0 % and  4.8 %
    00445  4.6 / 12.5 %  12.6 / 39.6 %  12.8 % and 10.3 %
    00543  2.7 /  9.5 %   9.8 / 53.7 %   4.0 % and  8.1 %
    ===== ============== ============== ===================

    "Best single fit": the medians (floor and elsewhere) of the one scale and shift that fits all measured
    pixels of the frame best (relative least squares on the ground truth itself), i.e. what MiDaS small allows
    at all. Off the floor the error is the model's own inconsistency between the floor and the rest; the
    three-point calibration of test_reference gives 5-25 % medians on the same frames.
    """
    results = {}
    for n in NYU_FRAMES:
        result = floor_errors(f"nyu_{n}", recorded_midas(f"nyu_{n}"))
        assert result is not None, n
        results[n] = result
        assert result.floor_median < 0.06, n
        assert result.other_median < 0.3, n
    assert np.median([r.floor_median for r in results.values()]) < 0.04
    assert np.median([r.other_median for r in results.values()]) < 0.15


def test_what_a_one_degree_tilt_error_costs() -> None:
    """Tilt off by +1 or -1 degree, MiDaS-like depth (seed 7, first frame): the floor's median error goes from
    0.7-2.5 % to 1.3-5.3 % (elsewhere from 0.8-5.4 % to 1.2-7.5 %; 90th percentiles up to 11.7 %), the worst at
    the nearly level cameras (Open3D sequence, SUN) whose floor is seen at grazing angles: the floor's distance
    along a ray alpha below the horizon changes by cot(alpha) x 1.75 % per degree (cot 10 degrees = 5.7: 10 %),
    and the scale and shift fit absorbs part of that. On the recorded MiDaS outputs 1 degree moves the floor's
    median by up to 2 points and the rest's by up to 5."""
    midas = MidasLike(np.random.default_rng(7))
    for name in VISIBLE_FLOORS:
        depth = midas(load_scene(name).inverse)
        for tilt_error in (-1.0, 1.0):
            result = floor_errors(name, depth, tilt_error_deg=tilt_error)
            assert result is not None, name
            assert result.floor_median < 0.07, (name, tilt_error)
            assert result.other_median < 0.09, (name, tilt_error)
