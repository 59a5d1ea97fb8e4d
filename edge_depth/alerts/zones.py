"""Zone and exclusion polygons as pixel masks at the model's resolution, and zone outlines for snapshots.

Polygons are in normalised image coordinates: (0, 0) is the top-left corner of the image, (1, 1) the
bottom-right one, so the same zone works at any resolution. Masks are rasterised once per depth shape
and cached: per frame only index gathers remain. Cached arrays are read-only, as every frame and every
alert kind shares them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_depth.depthstats import grid

Point = tuple[float, float]

ZONE_COLOR = (0, 215, 255)  # BGR amber
ACTIVE_COLOR = (0, 0, 255)  # BGR red


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A zone as the daemon draws and announces it: ``name`` and ``polygon`` (normalised [x, y] corners)."""

    name: str
    polygon: tuple[Point, ...]


def polygon_mask(polygon: Sequence[Point], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool mask of the pixels whose centres lie inside ``polygon`` (normalised corners).

    Even-odd rule with half-open edges, so zones that share an edge split its pixels instead of both
    taking them. Built once per shape: O(corners x pixels).
    """
    height, width = shape
    px = ((np.arange(width) + 0.5) / width)[None, :]
    py = ((np.arange(height) + 0.5) / height)[:, None]
    inside = np.zeros(shape, bool)
    corners = [(float(x), float(y)) for x, y in polygon]
    for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1], strict=True):
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        spans = (y1 > py) != (y2 > py)
        crossing = x1 + (py - y1) * ((x2 - x1) / (y2 - y1))
        inside ^= spans & (px < crossing)
    return inside


@dataclass(frozen=True, slots=True)
class ZonePixels:
    """The pixels of one zone (exclusions removed) at one depth shape.

    ``flat``: (N,) int64 indices into the raveled (H, W) image; ``xs``/``ys``: (N,) float32 normalised
    pixel-centre coordinates, for bounding boxes and centroids.
    """

    name: str
    flat: np.ndarray
    xs: np.ndarray
    ys: np.ndarray


@dataclass(frozen=True, slots=True)
class ZoneMasks:
    """Everything mask-shaped for one depth shape.

    ``zones``: per zone its pixels, in the order the zones were given;
    ``watched_grid``: (N,) int64 flat indices of the subsampled grid (:func:`edge_depth.depthstats.grid`: every
    4th pixel) inside the watched area (the union of the zones, or the whole image without zones),
    exclusions removed; ``grid_allowed``: (ceil(H/4), ceil(W/4)) bool, the subsampled grid outside exclusions.
    """

    shape: tuple[int, int]
    zones: tuple[ZonePixels, ...]
    watched_grid: np.ndarray
    grid_allowed: np.ndarray


def build_masks(
    shape: tuple[int, int],
    zones: Sequence[ZoneSpec],
    exclusions: Sequence[Sequence[Point]],
) -> ZoneMasks:
    """Rasterise ``zones`` and ``exclusions`` for an (H, W) depth map."""
    height, width = shape
    excluded = np.zeros(shape, bool)
    for polygon in exclusions:
        excluded |= polygon_mask(polygon, shape)
    watched = np.zeros(shape, bool)
    pixels = []
    for zone in zones:
        mask = polygon_mask(zone.polygon, shape) & ~excluded
        watched |= mask
        flat = np.flatnonzero(mask)
        ys, xs = np.divmod(flat, width)
        pixels.append(
            ZonePixels(
                zone.name,
                _read_only(flat),
                _read_only(((xs + 0.5) / width).astype(np.float32)),
                _read_only(((ys + 0.5) / height).astype(np.float32)),
            )
        )
    if not zones:
        watched[:] = True
    watched &= ~excluded
    on_grid = np.zeros(shape, bool)
    grid(on_grid)[...] = True
    return ZoneMasks(
        shape=shape,
        zones=tuple(pixels),
        watched_grid=_read_only(np.flatnonzero(watched & on_grid)),
        grid_allowed=_read_only(~grid(excluded)),
    )


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class MaskCache:
    """Masks per depth shape, built on first use (a camera's shape rarely changes, so this holds one entry)."""

    def __init__(self, zones: Sequence[ZoneSpec], exclusions: Sequence[Sequence[Point]]) -> None:
        self._zones = tuple(zones)
        self._exclusions = tuple(tuple(p) for p in exclusions)
        self._cache: dict[tuple[int, int], ZoneMasks] = {}

    def excluded(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: the pixels inside any exclusion (built per call: for occasional probes, not per frame)."""
        out = np.zeros(shape, bool)
        for polygon in self._exclusions:
            out |= polygon_mask(polygon, shape)
        return out

    def get(self, shape: tuple[int, int]) -> ZoneMasks:
        masks = self._cache.get(shape)
        if masks is None:
            masks = build_masks(shape, self._zones, self._exclusions)
            self._cache[shape] = masks
        return masks


def draw_zones(image: np.ndarray, zones: Sequence[ZoneSpec], *, active: Collection[str] = ()) -> np.ndarray:
    """A copy of the (H, W, 3) uint8 BGR ``image`` with each zone outlined and labelled.

    Zones named in ``active`` are drawn red and thicker, the others amber.
    """
    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(height / 180))
    for zone in zones:
        corners = np.round(np.asarray(zone.polygon) * (width - 1, height - 1)).astype(np.int32)
        on = zone.name in active
        color = ACTIVE_COLOR if on else ZONE_COLOR
        cv2.polylines(out, [corners], isClosed=True, color=color, thickness=thickness * (2 if on else 1))
        x, y = corners[:, 0].min(), corners[:, 1].min()
        cv2.putText(out, zone.name, (int(x) + 3, int(y) + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return out
