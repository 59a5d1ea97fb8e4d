"""Frame preparation before inference: only a resize, the IR does colour conversion and normalisation.

Runs in each camera's capture thread, so it overlaps with inference on the other core.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MODEL_LONG_SIDE = 256  # MiDaS v2.1 small was trained at 256 on the longer side
MULTIPLE_OF = 32  # the encoder downsamples by 32


def auto_input_size(width: int, height: int, long_side: int = MODEL_LONG_SIDE) -> tuple[int, int]:
    """Model input (width, height) for a frame, as MiDaS's official "small" transform chooses it.

    Keeps the aspect ratio with the longer side at ``long_side``, both sides rounded to multiples of 32
    (NumPy's round-half-to-even, like the official code): 640x480 -> 256x192, 960x540 -> 256x128.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    scale = long_side / max(width, height)

    def fit(n: float) -> int:
        return max(MULTIPLE_OF, int(np.round(n * scale / MULTIPLE_OF)) * MULTIPLE_OF)

    return min(fit(width), long_side), min(fit(height), long_side)


@dataclass(frozen=True, slots=True)
class Resizer:
    """Resizes decoded frames to the model's input: a fixed (width, height), or chosen per frame size.

    Call: (H, W, 3) uint8 BGR -> (h, w, 3) uint8 BGR. Bicubic, as in MiDaS's own transform.
    """

    fixed_size: tuple[int, int] | None = None

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        return self.fixed_size or auto_input_size(width, height)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        size = self.target_size(w, h)
        if size == (w, h):
            return image
        return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC))
