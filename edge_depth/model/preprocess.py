"""Frame preparation before inference: only a resize, the IR does colour conversion and normalisation.

How frames are resized is a fact of the model (``ModelSpec``: longer side, size multiple, filter), read
from the IR by the engine. Runs in each camera's capture thread, so it overlaps with inference on the
other core.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_depth.model.contract import MIDAS_V21_SMALL, ModelSpec

_INTERPOLATION = {
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}


def auto_input_size(width: int, height: int, spec: ModelSpec = MIDAS_V21_SMALL) -> tuple[int, int]:
    """Model input (width, height) for a frame, as MiDaS's official "small" transform chooses it.

    Keeps the aspect ratio with the longer side at ``spec.long_side``, both sides rounded to multiples of
    ``spec.multiple`` (NumPy's round-half-to-even, like the official code). MiDaS v2.1 small:
    640x480 -> 256x192, 960x540 -> 256x128.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    long_side, multiple = spec.long_side, spec.multiple
    scale = long_side / max(width, height)

    def fit(n: float) -> int:
        return max(multiple, int(np.round(n * scale / multiple)) * multiple)

    return min(fit(width), long_side), min(fit(height), long_side)


@dataclass(frozen=True, slots=True)
class Resizer:
    """Resizes decoded frames to the model's input: a fixed (width, height), or chosen per frame size.

    Call: (H, W, 3) uint8 BGR -> (h, w, 3) uint8 BGR, with the spec's filter. A fixed size is taken as
    given; the engine checks it against the model (``DepthEngine(input_size=...)``).
    """

    spec: ModelSpec = MIDAS_V21_SMALL
    fixed_size: tuple[int, int] | None = None

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        return self.fixed_size or auto_input_size(width, height, self.spec)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        size = self.target_size(w, h)
        if size == (w, h):
            return image
        interpolation = _INTERPOLATION[self.spec.resize_filter]
        return np.ascontiguousarray(cv2.resize(image, size, interpolation=interpolation))
