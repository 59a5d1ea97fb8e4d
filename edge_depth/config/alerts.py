"""Per-camera alert configuration: depth reference, obstacle zones, exclusions, falls and depth health.

Units of zone thresholds depend on the camera's reference mode (``reference.mode``):

- ``relative``: relative distance, 0 = as near as the nearest 2 % of the frame, 1 = as far as the
  farthest 2 % (the frame's own robust range). A pixel counts when its relative distance is <= ``enter``.
  Defaults: enter 0.2, exit 0.3.
- ``baseline``: how much nearer than the learned empty scene a pixel is, as a fraction of the empty
  scene's depth range (robust p2..p98 of its inverse depth). A pixel counts when it is nearer than the
  baseline by >= ``enter``. Defaults: enter 0.15, exit 0.10.
- ``metric``: metres. A pixel counts when it is nearer than ``enter`` metres. ``enter`` is required;
  exit defaults to 1.15 x enter.

Hysteresis: once a zone is on, its pixels count against ``exit`` (a looser threshold) until it clears.
When only ``enter`` is given, ``exit`` keeps the default proportion (relative x1.5, baseline x2/3,
metric x1.15).

A zone is *occupied* when at least ``min_area`` of its pixels (exclusions removed) count. It raises an
alert after ``min_duration_s`` of continuous occupation, sends an ``update`` at most every
``update_interval_s`` while occupied, ends after ``hold_s`` without occupation, and then stays quiet for
``cooldown_s``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge_depth.config.base import StrictModel

ReferenceMode = Literal["relative", "baseline", "metric"]
Severity = Literal["info", "warning", "critical"]

_ZONE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
FALL_ZONE = "fall"
"""Zone name under which the fall detector reports (alerts and the binary sensor); reserved."""

Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]
Polygon = Annotated[
    list[tuple[Coordinate, Coordinate]],
    Field(
        min_length=3,
        max_length=64,
        description="Polygon corners [x, y], normalised: (0, 0) top left, (1, 1) bottom right.",
    ),
]

_DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {"relative": (0.2, 0.3), "baseline": (0.15, 0.10)}
_METRIC_EXIT_FACTOR = 1.15
_MIN_TWICE_AREA = 1e-4  # a floor polygon must cover at least 1/20000 of the image (twice its area: shoelace sum)


class RelativeConfig(StrictModel):
    low_percentile: float = Field(2.0, ge=0, le=20, description="Percentile of the frame's depth taken as 'far' (1).")
    high_percentile: float = Field(
        98.0, ge=80, le=100, description="Percentile of the frame's depth taken as 'near' (0)."
    )
    smoothing_s: float = Field(
        0.3, ge=0, le=10, description="Time constant of the per-pixel smoothing of relative distance (s); 0 = off."
    )

    @model_validator(mode="after")
    def _ordered(self) -> RelativeConfig:
        if self.high_percentile <= self.low_percentile:
            raise ValueError("high_percentile must be above low_percentile")
        return self


class BaselineConfig(StrictModel):
    learn_s: float = Field(
        5.0, gt=0, le=600, description="Seconds of frames the empty scene is learned from (at start or after a reset)."
    )
    learn_frames: int = Field(
        25, ge=3, le=200, description="Frames kept, spread evenly over learn_s, for the per-pixel median."
    )
    foreground: float = Field(
        0.08,
        gt=0,
        le=1,
        description="A pixel is foreground when nearer than the baseline by this fraction of the baseline's range "
        "(fall tracking, adaptation).",
    )
    drift_time_constant_s: float = Field(
        300.0, ge=10, le=86400, description="Time constant of the slow update of unchanged pixels (s)."
    )
    absorb_after_s: float = Field(
        300.0,
        ge=5,
        le=86400,
        description="A pixel that stays different from the baseline this long becomes baseline (a moved chair) (s). "
        "Pixels of a latched fall are never absorbed.",
    )
    fit_iterations: int = Field(2, ge=1, le=5, description="Robust refits of the per-frame scale and shift.")
    fit_outlier_sigma: float = Field(
        3.0, ge=1.5, le=10, description="Pixels off the fit by more than this many robust sigmas are not background."
    )


class ReferencePoint(StrictModel):
    x: Coordinate = Field(..., description="Horizontal position, normalised (0 = left edge, 1 = right edge).")
    y: Coordinate = Field(..., description="Vertical position, normalised (0 = top edge, 1 = bottom edge).")
    distance_m: float = Field(..., gt=0.05, le=100, description="True distance from the camera (m).")
    name: str | None = Field(None, max_length=64, description="Label for logs, e.g. 'door frame'.")


class FloorConfig(StrictModel):
    """Where the camera sees a flat floor: its geometry gives metres without reference points (see
    ``edge_depth.alerts.floor``)."""

    camera_height_m: float = Field(..., gt=0.1, le=20, description="Height of the camera's lens above the floor (m).")
    tilt_deg: float = Field(
        ...,
        ge=-30,
        le=90,
        description="Pitch of the optical axis below horizontal (degrees): 0 = level, 90 = straight down.",
    )
    roll_deg: float = Field(
        0.0,
        ge=-45,
        le=45,
        description="Rotation about the optical axis (degrees), positive = turned clockwise seen from behind the "
        "camera (level lines in the image rise to the right).",
    )
    vfov_deg: float | None = Field(
        None, gt=10, lt=170, description="Vertical field of view (degrees); give this or focal_px."
    )
    focal_px: float | None = Field(
        None,
        gt=10,
        le=50000,
        description="Vertical focal length f_y (pixels of an image image_height_px tall); give this or vfov_deg.",
    )
    image_height_px: int | None = Field(
        None, ge=32, le=20000, description="Height (pixels) of the image focal_px refers to; only with focal_px."
    )
    centre_y: Coordinate = Field(
        0.5, description="Row of the principal point, normalised (0 = top edge, 1 = bottom edge)."
    )
    polygon: Polygon = Field(
        ...,
        description="Floor area in the empty scene, normalised [x, y] corners; things standing on it are allowed.",
    )
    inlier_tolerance: float = Field(
        0.1,
        ge=0.02,
        le=0.5,
        description="A floor pixel agrees with a frame's fit when its distance is within this fraction.",
    )
    min_inliers: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Fraction of the floor polygon's pixels that must agree for the floor to calibrate a frame.",
    )
    point_weight: float = Field(
        1.0,
        gt=0,
        le=100,
        description="With reference points too: weight of each point in the joint fit, relative to the whole floor.",
    )

    @model_validator(mode="after")
    def _one_focal(self) -> FloorConfig:
        if (self.vfov_deg is None) == (self.focal_px is None):
            raise ValueError("floor needs exactly one of vfov_deg and focal_px")
        if (self.focal_px is None) != (self.image_height_px is None):
            raise ValueError("floor.focal_px and floor.image_height_px go together")
        corners = self.polygon
        twice_area = sum(
            x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1], strict=True)
        )
        if abs(twice_area) < _MIN_TWICE_AREA:
            raise ValueError("floor.polygon encloses no area")
        return self

    def focal(self) -> float:
        """Vertical focal length in image heights (f_y / H)."""
        if self.focal_px is not None and self.image_height_px is not None:
            return self.focal_px / self.image_height_px
        assert self.vfov_deg is not None  # checked by the validator
        return 0.5 / math.tan(math.radians(self.vfov_deg) / 2)


class MetricConfig(StrictModel):
    points: list[ReferencePoint] = Field(
        default_factory=list, max_length=32, description="Static reference points: where, and how far away."
    )
    min_points: int = Field(2, ge=2, le=32, description="Usable points a frame needs to be calibrated.")
    patch_px: int = Field(
        2, ge=0, le=10, description="Half size of the square patch read around each point (model pixels)."
    )
    # MiDaS small alone is off by up to ~25 % at single points (NYU frames); an occluder is off by far more.
    max_point_error: float = Field(
        0.3,
        gt=0,
        le=1,
        description="With 3+ points, a point off the line through the others by more than this fraction of its "
        "distance is dropped (occluded); with a floor, a point this far off the floor's fit is reported and dropped.",
    )
    floor: FloorConfig | None = Field(
        None, description="Metres from the floor's geometry, alone or together with the points."
    )


class ReferenceConfig(StrictModel):
    mode: ReferenceMode = Field("baseline", description="relative | baseline | metric (see the module docstring).")
    relative: RelativeConfig = Field(default_factory=RelativeConfig, description="Settings of relative mode.")
    baseline: BaselineConfig = Field(default_factory=BaselineConfig, description="Settings of baseline mode.")
    metric: MetricConfig = Field(default_factory=MetricConfig, description="Settings of metric mode.")

    @model_validator(mode="after")
    def _metric_has_points(self) -> ReferenceConfig:
        if self.mode == "metric" and self.metric.floor is None and len(self.metric.points) < self.metric.min_points:
            raise ValueError(
                f"metric mode needs at least {self.metric.min_points} metric.points, got {len(self.metric.points)}"
                " (or a metric.floor)"
            )
        return self


class ZoneConfig(StrictModel):
    name: str = Field(..., pattern=_ZONE_NAME, description="Zone id: lower case, digits, '-', '_'; used in topics.")
    polygon: Polygon
    enter: float | None = Field(
        None, ge=-1, le=100, description="Threshold that makes a pixel count (unit of the reference mode)."
    )
    exit: float | None = Field(
        None, ge=-1, le=100, description="Looser threshold used while the zone is on (unit of the reference mode)."
    )
    min_area: float = Field(
        0.05, gt=0, le=1, description="Fraction of the zone's pixels that must count for the zone to be occupied."
    )
    min_duration_s: float = Field(1.0, ge=0, le=600, description="Occupied this long before an alert is raised (s).")
    hold_s: float = Field(2.0, ge=0, le=600, description="Unoccupied this long before an alert ends (s).")
    cooldown_s: float = Field(
        10.0, ge=0, le=3600, description="No new alert in this zone for this long after an end (s)."
    )
    update_interval_s: float = Field(
        5.0, ge=0.5, le=3600, description="At most one 'update' event per this interval while an alert is open (s)."
    )
    severity: Severity = Field("warning", description="Severity reported in this zone's alerts.")
    snapshot: bool = Field(True, description="Publish a heatmap snapshot with the zone drawn on each 'new' alert.")


class ExclusionConfig(StrictModel):
    name: str = Field(..., pattern=_ZONE_NAME, description="Label, e.g. 'bed' or 'window'.")
    polygon: Polygon


class FallConfig(StrictModel):
    enabled: bool = Field(False, description="Detect falls (baseline mode only).")
    # A person lying 4-5 m away fills about 1 % of the image; half that keeps them when the floor hides a part.
    min_region_area: float = Field(
        0.005, gt=0, le=1, description="Smallest foreground region tracked, as a fraction of the image."
    )
    min_drop_speed: float = Field(
        0.5,
        gt=0,
        le=20,
        description="The top edge must come down at least this fast during the drop (standing heights per second, "
        "fastest 0.5 s of the drop).",
    )
    min_drop: float = Field(
        0.5, gt=0, le=2, description="The top edge must come down by at least this fraction of the standing height."
    )
    min_centroid_drop: float = Field(
        0.2, gt=0, le=1, description="Centroid must drop by at least this fraction of the standing height."
    )
    drop_window_s: float = Field(2.0, gt=0, le=10, description="Longest time a fall may take (s).")
    upright_aspect: float = Field(
        0.8, gt=0, le=5, description="A region is upright when width / height (pixels) is at most this."
    )
    lying_aspect: float = Field(
        1.2, gt=0, le=10, description="A region is lying when width / height (pixels) is at least this."
    )
    max_lying_height: float = Field(
        0.6, gt=0, le=1, description="A lying region is at most this fraction of the standing height."
    )
    low_height: float = Field(
        0.3,
        gt=0,
        le=1,
        description="A region at most this fraction of the standing height is down whatever its shape (a body "
        "lying along the line of sight).",
    )
    floor_gap: float = Field(
        0.35,
        ge=0,
        le=1,
        description="A region is down when its top stands out in depth from what is behind it by at most this "
        "fraction of what the standing person's top did (its top is near the floor); 0 = off.",
    )
    confirm_s: float = Field(2.0, ge=0, le=120, description="Staying down this long confirms a fall (s).")
    rise_s: float = Field(1.0, ge=0, le=120, description="Upright again this long ends a latched fall (s).")
    update_interval_s: float = Field(
        30.0, ge=1, le=3600, description="Reminder 'update' events while a fall stays latched (s)."
    )
    severity: Severity = Field("critical", description="Severity reported in fall alerts.")
    snapshot: bool = Field(True, description="Publish a heatmap snapshot on each new fall alert.")

    @model_validator(mode="after")
    def _aspects_ordered(self) -> FallConfig:
        if self.lying_aspect <= self.upright_aspect:
            raise ValueError("lying_aspect must be above upright_aspect")
        return self


class HealthConfig(StrictModel):
    enabled: bool = Field(True, description="Suppress alerts while the depth is unreliable.")
    min_contrast: float = Field(
        6.0, ge=0, le=128, description="Standard deviation of the grey image (0..255) below which a view is covered."
    )
    dark_level: float = Field(
        30.0, ge=0, le=255, description="Mean grey level (0..255) below which a low-contrast view is called dark."
    )
    min_depth_spread: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Depth is flat when its robust spread (p98 - p2) falls below this fraction of its running level.",
    )
    max_invalid_fraction: float = Field(
        0.5, gt=0, le=1, description="Depth is unreliable when more than this fraction of pixels is not finite."
    )
    bad_frames: int = Field(3, ge=1, le=1000, description="Consecutive bad frames before depth is unreliable.")
    recover_frames: int = Field(10, ge=1, le=1000, description="Consecutive good frames before it is reliable again.")


class CameraAlertsConfig(StrictModel):
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig, description="How depth is referenced.")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=16, description="Obstacle zones.")
    exclusions: list[ExclusionConfig] = Field(
        default_factory=list, max_length=16, description="Areas ignored by zones, falls and the nearest distance."
    )
    fall: FallConfig = Field(default_factory=FallConfig, description="Fall detection.")
    health: HealthConfig = Field(default_factory=HealthConfig, description="Depth health.")

    @model_validator(mode="after")
    def _consistent(self) -> CameraAlertsConfig:
        names = [z.name for z in self.zones]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"zone name {name!r} is used twice")
        if FALL_ZONE in names:
            raise ValueError(f"zone name {FALL_ZONE!r} is reserved for the fall sensor")
        if self.fall.enabled and self.reference.mode != "baseline":
            raise ValueError("fall.enabled needs reference.mode 'baseline'")
        for zone in self.zones:
            self._check_thresholds(zone)
        return self

    def _check_thresholds(self, zone: ZoneConfig) -> None:
        mode = self.reference.mode
        if mode == "metric":
            if zone.enter is None:
                raise ValueError(f"zone {zone.name!r}: metric mode needs 'enter' in metres")
            if zone.enter <= 0 or (zone.exit is not None and zone.exit < zone.enter):
                raise ValueError(f"zone {zone.name!r}: metric thresholds need 0 < enter <= exit (metres)")
            return
        enter, exit_ = self.thresholds(zone)
        if mode == "relative" and exit_ < enter:
            raise ValueError(f"zone {zone.name!r}: relative mode needs enter <= exit (relative distance)")
        if mode == "baseline" and (enter <= 0 or exit_ <= 0 or exit_ > enter):
            raise ValueError(f"zone {zone.name!r}: baseline mode needs 0 < exit <= enter (nearer-than-baseline)")

    def thresholds(self, zone: ZoneConfig) -> tuple[float, float]:
        """(enter, exit) of ``zone`` in the unit of the reference mode, defaults filled in."""
        mode = self.reference.mode
        if mode == "metric":
            assert zone.enter is not None  # checked by the validator
            return zone.enter, zone.exit if zone.exit is not None else zone.enter * _METRIC_EXIT_FACTOR
        default_enter, default_exit = _DEFAULT_THRESHOLDS[mode]
        enter = zone.enter if zone.enter is not None else default_enter
        if zone.exit is not None:
            return enter, zone.exit
        # Keep the default proportion between the two when only enter was given.
        return enter, enter * default_exit / default_enter
