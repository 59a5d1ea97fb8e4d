"""Zone masks, outlines for snapshots, and the alert configuration's rules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from edge_depth.alerts.zones import ACTIVE_COLOR, ZONE_COLOR, MaskCache, ZoneSpec, build_masks, draw_zones, polygon_mask
from edge_depth.config.alerts import CameraAlertsConfig

SHAPE = (192, 256)
LEFT_HALF = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))


def test_polygon_masks_cover_the_normalised_area() -> None:
    assert polygon_mask(((0, 0), (1, 0), (1, 1), (0, 1)), SHAPE).all()
    half = polygon_mask(LEFT_HALF, SHAPE)
    assert half[:, :128].all() and not half[:, 128:].any()
    triangle = polygon_mask(((0, 0), (1, 0), (0, 1)), SHAPE)
    assert triangle.mean() == pytest.approx(0.5, abs=0.01)


def test_exclusions_are_removed_from_zones_and_masks_are_cached() -> None:
    zones = [ZoneSpec("left", LEFT_HALF)]
    bed = [((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0))]
    masks = build_masks(SHAPE, zones, bed)
    (left,) = masks.zones
    assert left.flat.size == 96 * 128  # the top-left quarter
    assert left.ys.max() < 0.5 and left.xs.max() < 0.5
    assert not masks.grid_allowed[24:].any() and masks.grid_allowed[:24].all()  # the bottom half, on the 4x grid
    cache = MaskCache(zones, bed)
    assert cache.get(SHAPE) is cache.get(SHAPE)
    assert cache.get((96, 128)).shape == (96, 128)


def test_zone_outlines_are_drawn_on_a_copy() -> None:
    image = np.zeros((*SHAPE, 3), np.uint8)
    zones = [
        ZoneSpec("left", ((0.1, 0.1), (0.4, 0.1), (0.4, 0.9), (0.1, 0.9))),
        ZoneSpec("right", ((0.6, 0.1), (0.9, 0.1), (0.9, 0.9))),
    ]
    drawn = draw_zones(image, zones, active={"right"})
    assert not image.any()
    assert tuple(drawn[100, round(0.1 * 255)]) == ZONE_COLOR
    assert tuple(drawn[round(0.1 * 191), 200]) == ACTIVE_COLOR


def alerts_config(**cfg: Any) -> CameraAlertsConfig:
    return CameraAlertsConfig.model_validate(cfg)


def zone(**extra: Any) -> dict[str, Any]:
    return {"name": "door", "polygon": [list(p) for p in LEFT_HALF], **extra}


def test_thresholds_default_per_mode() -> None:
    cfg = alerts_config(zones=[zone()])
    assert cfg.thresholds(cfg.zones[0]) == pytest.approx((0.15, 0.10))
    cfg = alerts_config(reference={"mode": "relative"}, zones=[zone(enter=0.1)])
    assert cfg.thresholds(cfg.zones[0]) == pytest.approx((0.1, 0.15))
    points = [{"x": 0.1, "y": 0.1, "distance_m": 2.0}, {"x": 0.9, "y": 0.9, "distance_m": 3.0}]
    cfg = alerts_config(reference={"mode": "metric", "metric": {"points": points}}, zones=[zone(enter=1.0)])
    assert cfg.thresholds(cfg.zones[0]) == pytest.approx((1.0, 1.15))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"reference": {"mode": "metric"}}, "metric mode needs at least 2 metric.points, got 0"),
        (
            {"reference": {"mode": "relative"}, "fall": {"enabled": True}},
            "fall.enabled needs reference.mode 'baseline'",
        ),
        ({"zones": [zone(), zone()]}, "zone name 'door' is used twice"),
        ({"zones": [zone(name="fall")]}, "zone name 'fall' is reserved"),
        ({"zones": [zone(enter=0.1, exit=0.2)]}, "baseline mode needs 0 < exit <= enter"),
        (
            {"reference": {"mode": "relative"}, "zones": [zone(enter=0.3, exit=0.2)]},
            "relative mode needs enter <= exit",
        ),
        ({"zones": [zone(polygon=[[0, 0], [1.2, 0], [1, 1]])]}, "less than or equal to 1"),
        ({"zones": [zone(polygon=[[0, 0], [1, 0]])]}, "at least 3 items"),
        ({"zones": [zone(name="Door/1")]}, "should match pattern"),
        ({"zones": [zone(min_area=0)]}, "greater than 0"),
        ({"zones": [zone(colour="red")]}, "Extra inputs are not permitted"),
        ({"fall": {"enabled": True, "upright_aspect": 1.5, "lying_aspect": 1.2}}, "lying_aspect must be above"),
    ],
)
def test_bad_alert_configs_are_rejected_with_a_reason(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        alerts_config(**cfg)


def test_metric_zones_need_an_enter_distance() -> None:
    points = [{"x": 0.1, "y": 0.1, "distance_m": 2.0}, {"x": 0.9, "y": 0.9, "distance_m": 3.0}]
    with pytest.raises(ValidationError, match="metric mode needs 'enter' in metres"):
        alerts_config(reference={"mode": "metric", "metric": {"points": points}}, zones=[zone()])
