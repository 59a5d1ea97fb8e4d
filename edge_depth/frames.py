"""The values that pass between pipeline stages.

capture -> ``Frame`` -> inference -> ``DepthFrame`` -> heatmap / alerts -> publish.
All are frozen, and so are their arrays (``flags.writeable`` is cleared on construction): a stage never
mutates what another stage may still hold, and an attempt raises at once instead of corrupting a heatmap or
a baseline in another thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded camera frame, already resized to the model's input size by the capture thread.

    ``image``: (H, W, 3) uint8 BGR at the model's input size (the IR converts to RGB and normalises).
    ``seq``: 1-based count of frames decoded from this camera; gaps between consumed frames are drops.
    ``captured_mono``/``captured_wall``: ``time.monotonic()`` / ``time.time()`` right after decoding (s).
    ``source_size``: (width, height) of the frame as decoded, before resizing.
    """

    camera: str
    seq: int
    captured_mono: float
    captured_wall: float
    image: np.ndarray
    source_size: tuple[int, int]

    def __post_init__(self) -> None:
        _freeze(self.image)


@dataclass(frozen=True, slots=True)
class DepthFrame:
    """The model's answer for one ``Frame``.

    ``depth``: (H, W) float32, relative inverse depth at the model's resolution (larger = nearer; scale
    and shift unknown and different in every frame).
    ``image``: the (H, W, 3) uint8 BGR frame the model saw (for depth-health checks and snapshots).
    ``infer_ms``: wall time from submitting the request to its completion (ms).
    ``source_size``: (width, height) of the camera's frame before resizing, when known (heatmap aspect).
    """

    camera: str
    seq: int
    captured_mono: float
    captured_wall: float
    image: np.ndarray
    depth: np.ndarray
    infer_ms: float
    source_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _freeze(self.image, self.depth)


def _freeze(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.flags.writeable = False
