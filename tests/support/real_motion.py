"""Depth recordings with real human motion: GMDCSA24 fall and daily-activity clips turned into MiDaS-like depth.

No depth model runs in the tests, so real people's motion comes from video. ``tests/fixtures/falls/`` holds
19 clips of GMDCSA24 (subjects 1-3: 11 falls, 8 daily activities; downscaled to 320 px wide and re-encoded,
see NOTICE) with the dataset's label CSVs. For each clip:

1. **Frames** are decoded and resized to the model's input for the clip's aspect ratio, as the daemon does
   (``auto_input_size``): 256x192 for the 4:3 clips, 256x144 for the 16:9 ones.
2. **Background** (the empty room): the person is in view from the first frame of almost every clip and
   often stays still for most of it (lying after a fall, sitting on a bed), so a clip's own temporal median
   keeps them. Clips filmed from the same spot are found automatically (same size, ECC affine registration
   of their medians with correlation >= ``PEER_MIN_CORRELATION``); the background is the per-pixel median of
   ``POOL_FRAMES`` frames spread over the clip and as many from each registered, gain-matched peer. Where
   the person stands in different places in different clips, that median is the empty room.
3. **Silhouette**: pixels differing from the (per-frame gain-matched) background by more than
   ``DIFF_THRESHOLD`` grey levels in any channel, opened and closed, holes filled; the largest component
   plus the components that touch it after a small dilation (a person split by a bed frame).
4. **Room depth** (true inverse depth, 1/m): a floor plane whose inverse depth is linear in the image row
   (a plane's inverse depth is affine in image coordinates), from ``FLOOR_NEAR_M`` at the bottom row to
   the back wall at ``WALL_M`` where they meet (row ``WALL_ROW``), i.e. a camera about 2.2 m up tilted down;
   the back wall above that row, its inverse depth rising toward the image sides (side walls). Furniture in
   the clips is simply part of the background.
5. **Person depth**: the silhouette at the inverse depth of the floor at its lowest row (where they stand
   or lie), times ``PERSON_NEARER`` (a body is a little nearer than the floor under its lowest point).
6. **MiDaS-like output**: :class:`tests.support.scenes.MidasLike` (per-frame scale x0.8-1.25, shift +-10 %
   of the range, 1 % noise) with a fixed seed; images are the resized real frames.

:func:`recording_frames` prepends ``lead_s`` seconds of the background alone (depth and image), so a
baseline-mode camera learns the empty room before the clip starts. :func:`evaluate` replays every clip
through :class:`~edge_depth.alerts.camera.CameraAlerts` with fall detection enabled and otherwise default
settings; ``python -m tests.support.real_motion`` prints its table.

Labels: :func:`load_labels` reads the dataset's CSVs. A clip's *rest time* is when its silhouette stops
moving after the start of the labelled falling interval (the interval itself runs to the clip's end in
most rows): the first frame from which the silhouette's bounding box (top, bottom, left, right) stays
within ``REST_TOLERANCE`` of the image size for ``REST_HOLD_S`` seconds.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.fall import FallDetector, Region, regions
from edge_depth.alerts.reference import BaselineReference
from edge_depth.config.alerts import CameraAlertsConfig, FallConfig
from edge_depth.depthstats import grid
from edge_depth.frames import DepthFrame
from tests.support.scenes import T0_MONO, T0_WALL, MidasLike

FALLS = Path(__file__).resolve().parent.parent / "fixtures" / "falls"
LONG_SIDE = 256  # the model's input: longer side 256, both sides multiples of 32 (auto_input_size)

POOL_FRAMES = 12
PEER_MIN_CORRELATION = 0.7
DIFF_THRESHOLD = 32.0
MIN_PERSON_AREA = 0.004  # fraction of the image; a smaller silhouette counts as nobody in view

FLOOR_NEAR_M = 1.6  # floor at the bottom row of the image
WALL_M = 5.0  # back wall, where it meets the floor
WALL_ROW = 0.5  # normalised row where the floor meets the back wall
SIDE_WALL_GAIN = 0.8  # back wall inverse depth x (1 + gain x |x - 0.5| x 2): side walls nearer at the edges
PERSON_NEARER = 1.05

REST_TOLERANCE = 0.04
REST_HOLD_S = 1.0

Label = Literal["fall", "adl"]


# -- labels ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipLabel:
    """One CSV row: ``classes`` maps a class name (``Falling (SW)``, ``Sitting``, ...) to its intervals (s)."""

    subject: int
    label: Label
    number: str
    description: str
    classes: dict[str, tuple[tuple[float, float], ...]]

    @property
    def clip_id(self) -> str:
        return f"subject{self.subject}/{self.label}/{self.number}"

    @property
    def fall_interval(self) -> tuple[float, float] | None:
        """The first labelled falling interval (classes named ``Fall...``), None for daily activities."""
        spans = [span for name, spans in self.classes.items() if name.lower().startswith("fall") for span in spans]
        return min(spans) if spans else None


_CLASS = re.compile(r"([A-Za-z][A-Za-z ()]*?)\s*\[([^\]]*)\]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_classes(text: str) -> dict[str, tuple[tuple[float, float], ...]]:
    """``'Falling (SW)[3.4 to 6]; Sitting[0 to 3.4]'`` -> {'Falling (SW)': ((3.4, 6.0),), 'Sitting': ...}.

    Tolerates the dataset's typos: a missing ``)`` (``Falling (BW[5.9 to 10]``), a missing ``to``
    (``[0.9 4.6]``), several intervals in one bracket (``[0 to 0.5; 4.2 to 6.5]``), stray ``:``.
    """
    classes: dict[str, tuple[tuple[float, float], ...]] = {}
    for name, inside in _CLASS.findall(text):
        numbers = [float(n) for n in _NUMBER.findall(inside)]
        spans = tuple((numbers[i], numbers[i + 1]) for i in range(0, len(numbers) - 1, 2))
        key = name.strip()
        key = key + ")" if key.count("(") > key.count(")") else key
        classes[key] = classes.get(key, ()) + spans
    return classes


def load_labels(root: Path = FALLS) -> dict[str, ClipLabel]:
    """Every row of ``Subject_N/{Fall,ADL}.csv`` under ``root``, by clip id (``subject1/fall/13``)."""
    labels: dict[str, ClipLabel] = {}
    for path in sorted(root.glob("Subject_*/*.csv")):
        subject = int(path.parent.name.removeprefix("Subject_"))
        label: Label = "fall" if path.stem.lower() == "fall" else "adl"
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        for row in rows[1:]:
            if len(row) < 6 or not row[0].strip():
                continue
            number = row[0].strip().removesuffix(".mp4")
            item = ClipLabel(subject, label, number, row[4].strip(), parse_classes(",".join(row[5:])))
            labels[item.clip_id] = item
    return labels


# -- clips and frames ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    clip_id: str
    path: Path
    label: ClipLabel


def clips(root: Path = FALLS) -> list[Clip]:
    """The clips present under ``root`` (``Subject_N/{Fall,ADL}/NN.mp4``) with their labels, sorted by id."""
    labels = load_labels(root)
    found = []
    for path in sorted(root.glob("Subject_*/*/*.mp4")):
        subject = int(path.parent.parent.name.removeprefix("Subject_"))
        clip_id = f"subject{subject}/{path.parent.name.lower()}/{path.stem}"
        found.append(Clip(clip_id, path, labels[clip_id]))
    return found


def model_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the model input for a frame: longer side 256, both multiples of 32."""
    scale = LONG_SIDE / max(width, height)
    return tuple(min(max(32, int(np.round(n * scale / 32)) * 32), LONG_SIDE) for n in (width, height))  # type: ignore[return-value]


@cache
def read_clip(path: Path) -> tuple[np.ndarray, float]:
    """((N, h, w, 3) uint8 BGR frames at the model's input size, frames per second) of a video file."""
    capture = cv2.VideoCapture(str(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            size = model_size(frame.shape[1], frame.shape[0])
            frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    finally:
        capture.release()
    if not frames or not fps > 0:
        raise ValueError(f"{path}: no frames decoded")
    stack = np.stack(frames)
    stack.flags.writeable = False
    return stack, fps


def _spread(frames: np.ndarray, count: int) -> np.ndarray:
    picked: np.ndarray = frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]
    return picked


@cache
def _median(path: Path) -> np.ndarray:
    return np.asarray(np.median(_spread(read_clip(path)[0], POOL_FRAMES), axis=0), np.uint8)


def _grey_half(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (3, 3), 0).astype(np.float32)


def register(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(2x3 affine warp mapping ``fixed`` pixel coordinates into ``moving``, ECC correlation), or None."""
    start = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
    try:
        template, image = _grey_half(fixed), _grey_half(moving)
        everywhere = np.full(template.shape, 255, np.uint8)
        cc, found = cv2.findTransformECC(template, image, start, cv2.MOTION_AFFINE, criteria, everywhere, 1)
    except cv2.error:
        return None
    warp = np.array(found, np.float32)
    warp[:, 2] *= 2  # estimated at half size
    return warp, float(cc)


@dataclass(frozen=True)
class Background:
    """The empty room of one clip: ``image`` (h, w, 3) uint8 BGR; ``peers``: clip files of the same view
    whose frames went into it, with their registration correlation."""

    image: np.ndarray
    peers: tuple[tuple[str, float], ...]


@cache
def background(path: Path) -> Background:
    """The clip's empty room: per-pixel median of its frames and its registered peers' (module docstring)."""
    frames, _ = read_clip(path)
    height, width = frames.shape[1:3]
    own = _median(path)
    pool = [_spread(frames, POOL_FRAMES).astype(np.float32)]
    peers = []
    for other in sorted(path.parent.parent.parent.glob("Subject_*/*/*.mp4")):
        if other == path or read_clip(other)[0].shape[1:3] != (height, width):
            continue
        found = register(_median(other), own)
        if found is None or found[1] < PEER_MIN_CORRELATION:
            continue
        warp, cc = found
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = np.stack(
            [
                cv2.warpAffine(f, warp, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
                for f in _spread(read_clip(other)[0], POOL_FRAMES)
            ]
        ).astype(np.float32)
        gain = np.median(own, axis=(0, 1)) / np.maximum(np.median(warped, axis=(0, 1, 2)), 1.0)
        pool.append(np.clip(warped * gain.astype(np.float32), 0, 255))
        peers.append((other.relative_to(path.parent.parent.parent).as_posix(), round(cc, 3)))
    image = np.median(np.concatenate(pool), axis=0).round().astype(np.uint8)
    image.flags.writeable = False
    return Background(image, tuple(peers))


# -- silhouettes ----------------------------------------------------------------------------------------

_ELLIPSE5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
_ELLIPSE9 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1).astype(np.uint8)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return np.asarray(mask | holes, bool)


def silhouette(frame: np.ndarray, room: np.ndarray) -> np.ndarray:
    """(h, w) bool: the person in ``frame`` against the empty ``room`` (both (h, w, 3) uint8 BGR)."""
    image = frame.astype(np.float32)
    reference = room.astype(np.float32)
    # Exposure and lighting change during a clip: match each channel's gain and offset on the pixels that
    # look most like the room (the 60 % least different), twice.
    small, target = image[::4, ::4], reference[::4, ::4]
    slope, offset = np.ones(3, np.float32), np.zeros(3, np.float32)
    for _ in range(3):
        diff = np.abs(small * slope + offset - target).max(axis=2)
        quiet = diff <= np.percentile(diff, 60)
        for c in range(3):
            x, y = small[..., c][quiet], target[..., c][quiet]
            if np.ptp(x) > 0:
                slope[c], offset[c] = np.polyfit(x, y, 1)
    diff = np.abs(image * slope + offset - reference).max(axis=2)
    raw = (cv2.GaussianBlur(diff, (3, 3), 0) > DIFF_THRESHOLD).astype(np.uint8)
    cleaned = cv2.morphologyEx(cv2.morphologyEx(raw, cv2.MORPH_OPEN, _ELLIPSE5), cv2.MORPH_CLOSE, _ELLIPSE9)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cleaned, connectivity=8)
    if count < 2:
        return np.zeros(frame.shape[:2], bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < MIN_PERSON_AREA * cleaned.size:
        return np.zeros(frame.shape[:2], bool)
    near = cv2.dilate((labels == largest).astype(np.uint8), _ELLIPSE9) > 0
    keep = np.unique(labels[near & (labels > 0)])
    return _fill_holes(np.isin(labels, keep))


@dataclass(frozen=True)
class Box:
    """Bounding box of a silhouette, normalised (0..1, y down)."""

    top: float
    bottom: float
    left: float
    right: float

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def width(self) -> float:
        return self.right - self.left


def bounding_box(mask: np.ndarray) -> Box | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return Box(rows[0] / height, (rows[-1] + 1) / height, cols[0] / width, (cols[-1] + 1) / width)


# -- depth ------------------------------------------------------------------------------------------------


def floor_inverse(rows: np.ndarray) -> np.ndarray:
    """Inverse depth (1/m) of the floor at normalised image rows (0 = top): linear in the row, 1/WALL_M at
    WALL_ROW and 1/FLOOR_NEAR_M at the bottom (it reaches 0 at the horizon, above the image's middle)."""
    slope = (1.0 / FLOOR_NEAR_M - 1.0 / WALL_M) / (1.0 - WALL_ROW)
    return (1.0 / WALL_M + (rows - WALL_ROW) * slope).astype(np.float32)


@cache
def room_inverse(height: int, width: int) -> np.ndarray:
    """(height, width) float32 true inverse depth of the empty room: floor below WALL_ROW, walls above."""
    rows = (np.arange(height, dtype=np.float32) + 0.5) / height
    cols = (np.arange(width, dtype=np.float32) + 0.5) / width
    floor = np.broadcast_to(floor_inverse(rows)[:, None], (height, width))
    walls = np.broadcast_to((1.0 + SIDE_WALL_GAIN * np.abs(cols - 0.5) * 2.0)[None, :] / WALL_M, (height, width))
    room = np.asarray(np.maximum(floor, walls), np.float32)
    room.flags.writeable = False
    return room


def person_inverse(mask: np.ndarray) -> float | None:
    """Inverse depth (1/m) given to a silhouette: the room's (floor's) at its lowest pixel, x PERSON_NEARER."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    lowest = int(rows[-1])
    cols = np.flatnonzero(mask[lowest])
    room = room_inverse(*mask.shape)
    return float(room[lowest, int(np.median(cols))]) * PERSON_NEARER


@dataclass
class RealMotion:
    """One clip converted: ``depth`` (N, h, w) float32 MiDaS-like, ``truth`` (N, h, w) float32 true inverse
    depth (1/m), ``images`` (N, h, w, 3) uint8 BGR, ``masks`` (N, h, w) bool, ``fps``, the empty room's
    ``background`` image and its MiDaS-like ``background_depth``; all at the model's input size."""

    clip: Clip
    fps: float
    images: np.ndarray
    masks: np.ndarray
    truth: np.ndarray
    depth: np.ndarray
    background: Background
    rng_seed: int
    boxes: list[Box | None] = field(default_factory=list)

    @property
    def times(self) -> np.ndarray:
        """(N,) float64 seconds since the clip's first frame."""
        return np.arange(len(self.depth), dtype=np.float64) / self.fps

    @property
    def rest_s(self) -> float | None:
        return rest_time(self)


def _seed(clip_id: str, seed: int) -> int:
    return seed * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(clip_id))


def convert(clip: Clip, *, seed: int = 0) -> RealMotion:
    """Turn one clip into MiDaS-like depth (see the module docstring); deterministic for a given seed."""
    frames, fps = read_clip(clip.path)
    room = background(clip.path)
    height, width = frames.shape[1:3]
    empty = room_inverse(height, width)
    masks = np.stack([silhouette(f, room.image) for f in frames])
    truth = np.repeat(empty[None], len(frames), axis=0)
    for i, mask in enumerate(masks):
        value = person_inverse(mask)
        if value is not None:
            truth[i][mask] = np.maximum(truth[i][mask], np.float32(value))
    midas = MidasLike(np.random.default_rng(_seed(clip.clip_id, seed)))
    depth = np.stack([midas(t) for t in truth]).astype(np.float32)
    return RealMotion(clip, fps, frames, masks, truth, depth, room, seed, [bounding_box(m) for m in masks])


def recording_frames(
    motion: RealMotion, *, lead_s: float = 0.0, camera: str = "cam", seed: int = 1
) -> Iterator[DepthFrame]:
    """DepthFrames for replay: ``lead_s`` s of the empty room (its MiDaS-like depth, fresh jitter each frame,
    and the background image) at the clip's frame rate, then the clip. Times start at ``T0_MONO``/``T0_WALL``;
    the clip's first frame is at ``lead`` = round(lead_s x fps) / fps."""
    lead = round(lead_s * motion.fps)
    height, width = motion.depth.shape[1:]
    midas = MidasLike(np.random.default_rng(_seed(motion.clip.clip_id, seed)))
    empty = room_inverse(height, width)
    image = motion.background.image
    for i in range(lead + len(motion.depth)):
        t = i / motion.fps
        if i < lead:
            depth, picture = midas(empty).astype(np.float32), image
        else:
            depth, picture = motion.depth[i - lead], motion.images[i - lead]
        depth.flags.writeable = False
        yield DepthFrame(
            camera=camera,
            seq=i + 1,
            captured_mono=T0_MONO + t,
            captured_wall=T0_WALL + t,
            image=picture,
            depth=depth,
            infer_ms=15.0,
        )


# -- rest time --------------------------------------------------------------------------------------------


def rest_time(motion: RealMotion) -> float | None:
    """Seconds since the clip's start when the person comes to rest after the labelled fall starts (module
    docstring); None for daily activities, or when the silhouette never settles."""
    interval = motion.clip.label.fall_interval
    if interval is None:
        return None
    boxes = motion.boxes
    hold = max(1, round(REST_HOLD_S * motion.fps))
    start = max(0, math.floor(interval[0] * motion.fps))
    for i in range(start, len(boxes) - hold + 1):
        window = boxes[i : i + hold]
        first = window[0]
        if first is None or any(b is None for b in window):
            continue
        edges = np.array([(b.top, b.bottom, b.left, b.right) for b in window if b is not None])
        if float(np.abs(edges - edges[0]).max()) <= REST_TOLERANCE:
            return i / motion.fps
    return None


# -- evaluation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """What the fall detector's own region (the main foreground region of the baseline's foreground on its 4x
    grid) did in a clip, measured with a separate BaselineReference fed the same frames.

    ``standing_height``: tallest region height (image heights) before the rest time; ``drop_speed``: the
    fastest fall of the region's top over any 0.5 s (image heights / s) and ``drop_speed_ph`` the same in
    standing heights / s; ``final_height``: median region height over the last second / standing height;
    ``final_aspect``: median width / height (pixels) over the last second; ``final_bottom``: median bottom
    edge (normalised row) over the last second; ``down_s``: time from the rest time to the clip's end.
    """

    standing_height: float
    drop_speed: float
    drop_speed_ph: float
    final_height: float
    final_aspect: float
    final_bottom: float
    down_s: float | None


@dataclass(frozen=True)
class Outcome:
    clip_id: str
    label: Label
    detected: bool
    new_at_s: float | None  # since the clip's first frame
    rest_s: float | None
    delay_s: float | None
    reason: str
    features: Features
    peers: int

    def row(self) -> str:
        f = self.features
        delay = "-" if self.delay_s is None else f"{self.delay_s:+.1f}"
        rest = "-" if self.rest_s is None else f"{self.rest_s:.1f}"
        return (
            f"{self.clip_id:<18} {self.label:<4} {'yes' if self.detected else 'no':<3} {rest:>5} {delay:>6} "
            f"{f.drop_speed:5.2f} {f.drop_speed_ph:5.2f} {f.final_height:5.2f} {f.final_aspect:5.2f} "
            f"{'-' if f.down_s is None else f'{f.down_s:.1f}':>5} {self.peers:>2}  {self.reason}"
        )


HEADER = (
    f"{'clip':<18} {'kind':<4} {'det':<3} {'rest':>5} {'delay':>6} {'drop':>5} {'dr/ph':>5} {'fin_h':>5} "
    f"{'fin_a':>5} {'down':>5} {'pe'}  why missed / why detected"
)


def alerts_config(**fall: object) -> CameraAlertsConfig:
    """Fall detection enabled, every other setting default (baseline reference mode)."""
    return CameraAlertsConfig.model_validate({"fall": {"enabled": True, **fall}})


def _regions(frames: Sequence[DepthFrame], cfg: CameraAlertsConfig) -> list[tuple[float, list[Region]]]:
    """(time, regions, largest first) per judged frame, as the fall detector measures them (a separate
    reference)."""
    reference = BaselineReference(cfg.reference.baseline)
    out: list[tuple[float, list[Region]]] = []
    for frame in frames:
        measure = reference.measure(frame.depth, frame.captured_mono)
        if measure is None or measure.foreground is None:
            continue
        found = regions(grid(measure.foreground), cfg.fall.min_region_area, grid(measure.score))
        out.append((frame.captured_mono, found))
        reference.adapt(measure.score, frame.captured_mono)
    return out


def _why(regions_: list[tuple[float, list[Region]]], cfg: FallConfig) -> str:
    """How far the fall detector got on a clip it did not alarm on, replaying its regions through a
    :class:`~edge_depth.alerts.fall.FallDetector`: never down after a drop, or down but not for confirm_s."""
    detector = FallDetector(cfg)
    down_since: float | None = None
    longest = 0.0
    drops = 0
    for t, found in regions_:
        detector.update(t, found)
        evidence = detector.evidence(t)
        if evidence is None:
            down_since = None
            continue
        if down_since is None:
            down_since, drops = t, drops + 1
        longest = max(longest, t - down_since)
    if drops == 0:
        return "no drop ended down (drop, speed and down tests never passed together)"
    return f"down {drops}x after a drop, longest {longest:.1f} s < confirm_s {cfg.confirm_s}"


def _features(motion: RealMotion, regions_: list[tuple[float, list[Region]]], clip_t0: float) -> Features:
    rest = motion.rest_s
    seen = [(t - clip_t0, found[0]) for t, found in regions_ if found and t >= clip_t0]
    if not seen:
        return Features(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
    end = seen[-1][0]
    before = [r for t, r in seen if rest is None or t <= rest]
    standing = max((r.height for r in before or [r for _, r in seen]), default=0.0)
    speed = 0.0
    for i, (t, r) in enumerate(seen):
        for t2, r2 in seen[i + 1 :]:
            if t2 - t > 0.5:
                break
            if t2 - t >= 0.2:
                speed = max(speed, (r2.top - r.top) / (t2 - t))
    last = [r for t, r in seen if t >= end - 1.0]
    final_height = float(np.median([r.height for r in last])) / max(standing, 1e-6)
    return Features(
        standing,
        speed,
        speed / max(standing, 1e-6),
        final_height,
        float(np.median([r.aspect for r in last])),
        float(np.median([r.bottom for r in last])),
        None if rest is None else len(motion.depth) / motion.fps - rest,
    )


def evaluate_clip(clip: Clip, cfg: CameraAlertsConfig | None = None, *, seed: int = 0) -> Outcome:
    """Replay one converted clip (after learn_s + 1 s of the empty room) through CameraAlerts."""
    cfg = cfg or alerts_config()
    motion = convert(clip, seed=seed)
    lead_s = cfg.reference.baseline.learn_s + 1.0
    frames = list(recording_frames(motion, lead_s=lead_s))
    clip_t0 = T0_MONO + round(lead_s * motion.fps) / motion.fps
    camera = CameraAlerts("cam", cfg)
    new_at = None
    evidence = ""
    for frame in frames:
        for event in camera.process(frame).events:
            if event.kind == "fall" and event.type == "new" and new_at is None:
                new_at = frame.captured_mono - clip_t0
                e = event.evidence
                if e is not None:
                    gap = "-" if e.floor_gap is None else f"{e.floor_gap:.2f}"
                    evidence = (
                        f": drop {e.drop:.2f} at {e.drop_speed:.1f}/s, aspect {e.aspect:.2f}, "
                        f"height {e.height:.2f}, floor gap {gap}"
                    )
    regions = _regions(frames, cfg)
    rest = motion.rest_s
    delay = None if new_at is None or rest is None else new_at - rest
    if new_at is not None:
        reason = f"fall 'new' at {new_at:.1f} s{evidence}"
    else:
        reason = _why([(t, r) for t, r in regions if t >= clip_t0 - cfg.fall.drop_window_s], cfg.fall)
    return Outcome(
        clip.clip_id,
        clip.label.label,
        new_at is not None,
        new_at,
        rest,
        delay,
        reason,
        _features(motion, regions, clip_t0),
        len(motion.background.peers),
    )


def evaluate(root: Path = FALLS, cfg: CameraAlertsConfig | None = None) -> list[Outcome]:
    return [evaluate_clip(clip, cfg) for clip in clips(root)]


def main(argv: Sequence[str] = ()) -> int:
    outcomes = evaluate()
    print(HEADER)
    for outcome in outcomes:
        print(outcome.row())
    falls = [o for o in outcomes if o.label == "fall"]
    adls = [o for o in outcomes if o.label == "adl"]
    print(
        f"falls detected {sum(o.detected for o in falls)}/{len(falls)}; "
        f"daily activities alerted {sum(o.detected for o in adls)}/{len(adls)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
