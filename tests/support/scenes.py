"""Replayable depth scenarios built on real ground-truth depth, without the model.

A *scene* is a real RGB-D frame (NYU Depth v2, Open3D's sequence, TUM, SUN) reduced to the model's
resolution: inverse depth (1/m) and the BGR image, both 256x192. Scenarios composite synthetic objects
(boxes, a person-like upright rectangle that can bend, sit or fall) at chosen distances, then turn the
true inverse depth into what MiDaS would give: inverse depth times a random scale, plus a random shift and
noise, different in every frame.

The derived fixtures in ``tests/fixtures/scenes/`` are made by ``python -m tests.support.scenes`` from the
ground truth in ``tests/fixtures/nyu`` and ``tests/fixtures/rgbd`` (see ``derive_all``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.events import AlertEvent, AlertOutput
from edge_depth.frames import DepthFrame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SCENES = FIXTURES / "scenes"
SIZE = (256, 192)  # (width, height): the model's input for a 4:3 camera
T0_MONO = 1000.0
T0_WALL = 1_750_000_000.0
MIDAS_SCALE = 800.0  # MiDaS small's disparities are in the hundreds at 256x192

NYU_FRAMES = ("00065", "00122", "00438", "00439", "00445", "00543")


# -- fixture derivation -------------------------------------------------------------------------------


def _imread(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FileNotFoundError(path)
    return np.asarray(image)


def _read_metres(name: str) -> tuple[np.ndarray, Path]:
    """Ground-truth depth (480, 640) float32 metres (0 = invalid) and the matching colour image of a scene."""
    if name.startswith("nyu_"):
        n = name.removeprefix("nyu_")
        return np.load(FIXTURES / "nyu" / f"depth_{n}.npy").astype(np.float32), FIXTURES / "nyu" / f"rgb_{n}.png"
    rgbd = FIXTURES / "rgbd"
    if name.startswith("sequence_"):
        n = name.removeprefix("sequence_")
        raw = _imread(rgbd / "sequence" / "depth" / f"{n}.png", cv2.IMREAD_UNCHANGED)
        return raw.astype(np.float32) / 1000.0, rgbd / "sequence" / "color" / f"{n}.jpg"
    if name == "tum":
        raw = _imread(rgbd / "tum" / "TUM_depth.png", cv2.IMREAD_UNCHANGED)
        return raw.astype(np.float32) / 5000.0, rgbd / "tum" / "TUM_color.png"
    if name == "sun":
        raw = _imread(rgbd / "sun" / "SUN_depth.png", cv2.IMREAD_UNCHANGED).astype(np.uint32)
        rotated = ((raw >> 3) | (raw << 13)) & 0xFFFF  # SUN RGB-D toolbox: 16-bit rotate right by 3
        return rotated.astype(np.float32) / 1000.0, rgbd / "sun" / "SUN_color.jpg"
    raise KeyError(name)


SCENE_NAMES = (*(f"nyu_{n}" for n in NYU_FRAMES), "sequence_00000", "sequence_00004", "tum", "sun")


def derive(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(inverse depth (192, 256) float32 1/m with holes inpainted, valid (192, 256) bool) of a scene."""
    metres, _ = _read_metres(name)
    valid = (metres > 0).astype(np.float32)
    # Average only valid pixels: a plain resize would blend holes (0 m) into their neighbours.
    total = cv2.resize(metres * valid, SIZE, interpolation=cv2.INTER_AREA)
    weight = cv2.resize(valid, SIZE, interpolation=cv2.INTER_AREA)
    small_valid = weight > 0.5
    inverse = np.where(small_valid, weight / np.maximum(total, 1e-6), 0).astype(np.float32)
    # Holes take the value of the nearest measured pixel: labels number the zero (valid) pixels of the
    # distance transform's input in raster order.
    holes = (~small_valid).astype(np.uint8)
    _, labels = cv2.distanceTransformWithLabels(holes, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    filled = inverse[small_valid][labels - 1]
    return filled.astype(np.float32), small_valid


def derive_all(out: Path = SCENES) -> None:
    """Write ``<scene>.npz`` (inv_depth float16 1/m, valid bool) for every scene."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SCENE_NAMES:
        inverse, valid = derive(name)
        np.savez_compressed(out / f"{name}.npz", inv_depth=inverse.astype(np.float16), valid=valid)


# -- scenes and objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """A real scene at 256x192: ``inverse`` (H, W) float32 1/m, ``valid`` (H, W) bool (ground truth was
    measured there, not inpainted), ``image`` (H, W, 3) uint8 BGR."""

    name: str
    inverse: np.ndarray
    valid: np.ndarray
    image: np.ndarray

    @property
    def metres(self) -> np.ndarray:
        return 1.0 / self.inverse


@cache
def load_scene(name: str) -> Scene:
    with np.load(SCENES / f"{name}.npz") as data:
        inverse = data["inv_depth"].astype(np.float32)
        valid = data["valid"]
    _, colour = _read_metres(name)
    image = cv2.resize(_imread(colour, cv2.IMREAD_COLOR), SIZE, interpolation=cv2.INTER_AREA)
    inverse.flags.writeable = False
    image.flags.writeable = False
    return Scene(name, inverse, valid, image)


@dataclass(frozen=True)
class Box:
    """An upright box facing the camera: normalised edges (0..1, y down) and its distance (m)."""

    left: float
    top: float
    right: float
    bottom: float
    distance_m: float

    def lerp(self, other: Box, f: float) -> Box:
        return Box(*(a + (b - a) * f for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        return self.left, self.top, self.right, self.bottom, self.distance_m

    def moved(self, dx: float = 0.0, dy: float = 0.0) -> Box:
        return Box(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy, self.distance_m)


def person(cx: float, feet: float, height: float, distance_m: float, *, aspect_px: float = 0.3) -> Box:
    """A standing person: box with its feet at ``feet``, ``height`` image heights tall, width/height in pixels
    ``aspect_px``."""
    width = height * aspect_px * SIZE[1] / SIZE[0]
    return Box(cx - width / 2, feet - height, cx + width / 2, feet, distance_m)


def posture(standing: Box, height_ratio: float, aspect_px: float) -> Box:
    """The same person, feet and centre kept, with a new height (fraction of standing) and pixel aspect."""
    height = (standing.bottom - standing.top) * height_ratio
    width = height * aspect_px * SIZE[1] / SIZE[0]
    cx = (standing.left + standing.right) / 2
    return Box(cx - width / 2, standing.bottom - height, cx + width / 2, standing.bottom, standing.distance_m)


Timeline = Callable[[float], Sequence[Box]]


def keyframes(*frames: tuple[float, Box | None]) -> Timeline:
    """Boxes linearly interpolated between (time s, box) keyframes; None = absent. Nothing before the first
    keyframe; the last keyframe holds."""

    def at(t: float) -> Sequence[Box]:
        if t < frames[0][0]:
            return []
        for (t0, b0), (t1, b1) in itertools.pairwise(frames):
            if t0 <= t < t1:
                if b0 is None or b1 is None:
                    return [] if b0 is None else [b0]
                return [b0.lerp(b1, (t - t0) / (t1 - t0))]
        last = frames[-1][1]
        return [] if last is None else [last]

    return at


def combine(*timelines: Timeline) -> Timeline:
    return lambda t: [box for timeline in timelines for box in timeline(t)]


def render(scene: Scene, boxes: Sequence[Box]) -> tuple[np.ndarray, np.ndarray]:
    """(true inverse depth (H, W) float32 1/m, BGR image) with ``boxes`` composited in front of the scene."""
    inverse = scene.inverse.copy()
    image = scene.image.copy()
    height, width = inverse.shape
    for box in boxes:
        x0, x1 = round(box.left * width), round(box.right * width)
        y0, y1 = round(box.top * height), round(box.bottom * height)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        region = inverse[y0:y1, x0:x1]
        np.maximum(region, np.float32(1.0 / box.distance_m), out=region)
        patch = image[y0:y1, x0:x1]
        patch[:] = (patch // 3 + 90).astype(np.uint8)  # a textured, mid-grey object
    return inverse, image


@dataclass
class MidasLike:
    """What MiDaS small does to true inverse depth: a random scale and shift every frame, plus noise.

    scale x U(1/jitter, jitter) around ``MIDAS_SCALE``; shift U(-shift, +shift) x the frame's range
    (p98 - p2 after scaling); Gaussian noise of ``noise`` x that range.
    """

    rng: np.random.Generator
    jitter: float = 1.25
    shift: float = 0.1
    noise: float = 0.01

    def __call__(self, inverse: np.ndarray) -> np.ndarray:
        scale = MIDAS_SCALE * float(np.exp(self.rng.uniform(-np.log(self.jitter), np.log(self.jitter))))
        scaled = inverse * np.float32(scale)
        low, high = np.percentile(scaled[::8, ::8], (2, 98))
        span = float(high - low)
        noise = self.rng.standard_normal(inverse.shape, dtype=np.float32) * np.float32(self.noise * span)
        return scaled + np.float32(self.rng.uniform(-self.shift, self.shift) * span) + noise


def frames(
    scene: Scene,
    timeline: Timeline,
    *,
    duration_s: float,
    fps: float = 15.0,
    seed: int = 0,
    camera: str = "cam",
    override: Callable[[float, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    start_s: float = 0.0,
) -> Iterator[DepthFrame]:
    """DepthFrames of ``scene`` with ``timeline``'s boxes, from ``start_s`` for ``duration_s`` at ``fps``.

    ``override(t, depth, image)`` may replace the model output and image of a frame (a covered lens).
    Timestamps: monotonic ``T0_MONO + t``, wall ``T0_WALL + t``; seq counts from 1 at t = 0. ``depth`` and
    ``image`` are read-only, as the daemon's are: a stage that writes into a frame it was given fails here.
    """
    midas = MidasLike(np.random.default_rng(seed))
    first = round(start_s * fps)
    for i in range(first, first + round(duration_s * fps)):
        t = i / fps
        inverse, image = render(scene, timeline(t))
        depth = midas(inverse)
        if override is not None:
            depth, image = override(t, depth, image)
        depth.flags.writeable = False
        image.flags.writeable = False
        yield DepthFrame(
            camera=camera,
            seq=i + 1,
            captured_mono=T0_MONO + t,
            captured_wall=T0_WALL + t,
            image=image,
            depth=depth,
            infer_ms=15.0,
        )


if __name__ == "__main__":
    derive_all()


# -- running scenarios ----------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything a scenario produced: ``outputs[i]`` belongs to ``frames[i]``."""

    frames: list[DepthFrame]
    outputs: list[AlertOutput]

    def events(self, *, kind: str | None = None, zone: str | None = None) -> list[AlertEvent]:
        return [
            e
            for out in self.outputs
            for e in out.events
            if (kind is None or e.kind == kind) and (zone is None or e.zone == zone)
        ]

    def types(self, **match: str) -> list[str]:
        return [e.type for e in self.events(**match)]

    def changes(self, zone: str) -> list[bool]:
        """The zone's reported states, in order, after its initial report on the first frame."""
        states = [on for out in self.outputs[1:] for name, on in out.zone_states if name == zone]
        return states

    def time_of(self, event: AlertEvent) -> float:
        """Seconds since the scenario's t = 0 of the frame that produced ``event``."""
        return next(f.captured_mono for f in self.frames if f.seq == event.frame) - T0_MONO


def replay(alerts: CameraAlerts, source: Iterable[DepthFrame]) -> Run:
    frames_ = list(source)
    return Run(frames_, [alerts.process(f) for f in frames_])
