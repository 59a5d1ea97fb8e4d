"""Frames for INT8 calibration and for validation: images from a directory, frames from a video file.

Every frame is returned as the daemon feeds the IR: (h, w, 3) uint8 BGR, resized by the daemon's own
``Resizer`` for the model's spec (aspect ratio kept, the spec's filter), so frames of sources with
different aspect ratios have different sizes (MiDaS: 640x480 -> 256x192, 960x540 -> 256x128).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from convert import ConvertError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})
REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's own sample data: six NYU Depth v2 images and a 221-frame dash-camera clip (see NOTICE).
DEFAULT_CALIBRATION = (
    REPO_ROOT / "tests" / "fixtures" / "nyu",
    REPO_ROOT / "tests" / "fixtures" / "video" / "solidWhiteRight.mp4",
)
DEFAULT_VALIDATION = REPO_ROOT / "tests" / "fixtures" / "nyu"


@dataclass(frozen=True, slots=True)
class Source:
    """One calibration source: a directory of images or a video file, and how many frames it holds."""

    path: Path
    images: tuple[Path, ...]  # empty for a video
    count: int

    @property
    def is_video(self) -> bool:
        return not self.images


def open_source(path: Path) -> Source:
    """Inspect ``path``: a directory must hold images, a file must be a video OpenCV can decode."""
    if path.is_dir():
        images = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        if not images:
            raise ConvertError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this directory")
        return Source(path, images, len(images))
    if not path.is_file():
        raise ConvertError(f"{path}: no such file or directory")
    capture = cv2.VideoCapture(str(path))
    try:
        ok = capture.isOpened() and capture.grab()
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if not ok:
        raise ConvertError(f"{path}: not a video OpenCV can decode (pass a directory of images or a video file)")
    return Source(path, (), max(count, 1))


def pick_indices(total: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``range(total)`` (all of them when ``wanted >= total``)."""
    if wanted >= total:
        return list(range(total))
    return sorted({round(i) for i in np.linspace(0, total - 1, wanted)})


def load_frames(
    sources: Sequence[Source],
    resize: Callable[[np.ndarray], np.ndarray],
    limit: int | None = None,
    desc: str = "frames",
) -> list[np.ndarray]:
    """Up to ``limit`` frames spread evenly over all ``sources``, each passed through ``resize`` (the
    daemon's ``Resizer``: (H, W, 3) uint8 BGR -> (h, w, 3) uint8 BGR), with progress.

    Only the chosen frames are kept, so a long video costs decoding time but not memory.
    """
    total = sum(s.count for s in sources)
    chosen = pick_indices(total, total if limit is None else limit)
    frames: list[np.ndarray] = []
    with tqdm(total=len(chosen), desc=desc, unit="frame") as bar:
        offset = 0
        for source in sources:
            local = [i - offset for i in chosen if offset <= i < offset + source.count]
            offset += source.count
            for frame in _read(source, local):
                frames.append(resize(frame))
                bar.update(1)
    if not frames:
        raise ConvertError(f"no frames could be read from {', '.join(str(s.path) for s in sources)}")
    return frames


def _read(source: Source, indices: list[int]) -> list[np.ndarray]:
    if not indices:
        return []
    if not source.is_video:
        frames = []
        for index in indices:
            image = cv2.imread(str(source.images[index]), cv2.IMREAD_COLOR)
            if image is None:
                raise ConvertError(f"{source.images[index]}: not an image OpenCV can decode")
            frames.append(image)
        return frames
    wanted = set(indices)
    frames = []
    capture = cv2.VideoCapture(str(source.path))
    try:
        for index in range(max(indices) + 1):
            ok, frame = capture.read()
            if not ok:
                break  # the container's frame count was an estimate
            if index in wanted:
                frames.append(frame)
    finally:
        capture.release()
    return frames


def describe(sources: Sequence[Source], used: int) -> str:
    """One line for the manifest and the IR: what the frames came from (file names only) and how many."""
    names = " + ".join(s.path.name for s in sources)
    return f"{names} ({used} frames)"
