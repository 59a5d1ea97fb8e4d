"""``edge-depth predict``: heatmaps (and optionally raw depth) for single images, to try the model on a photo.

A single image has no history, so its colours span its own robust range (2nd..98th percentile).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_depth.depthstats import robust_range
from edge_depth.model.engine import DepthEngine, ModelError
from edge_depth.model.preprocess import Resizer
from edge_depth.outputs.heatmap import COLORMAPS, colorize

log = logging.getLogger(__name__)


def to_png16(depth: np.ndarray) -> np.ndarray:
    """(H, W) float32 inverse depth -> uint16 scaled so the image's maximum is 65535 (relative values only)."""
    peak = float(depth.max())
    scale = 65535.0 / peak if peak > 0 else 0.0
    return np.clip(depth * scale, 0, 65535).astype(np.uint16)


def predict(images: list[Path], *, model: Path, out_dir: Path, raw: str = "none", colormap: str = "inferno") -> int:
    """Write ``<stem>_depth.jpg`` for every image (at the image's own size); 0 when all worked, else 2."""
    if colormap not in COLORMAPS:
        print(f"error: unknown colormap {colormap!r} (one of {', '.join(COLORMAPS)})", file=sys.stderr)
        return 2
    try:
        engine = DepthEngine(model, hint="LATENCY")
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    resize = Resizer(engine.info.spec)
    failures = 0
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"error: {path}: not a readable image", file=sys.stderr)
            failures += 1
            continue
        depth = engine.infer(resize(image))
        low, high = robust_range(depth)
        heat = cv2.resize(colorize(depth, low, high, COLORMAPS[colormap]), (image.shape[1], image.shape[0]))
        target = out_dir / f"{path.stem}_depth.jpg"
        cv2.imwrite(str(target), heat, [cv2.IMWRITE_JPEG_QUALITY, 90])
        written = [target]
        if raw == "npy":
            written.append(out_dir / f"{path.stem}_depth.npy")
            np.save(written[-1], depth)
        elif raw == "png16":
            written.append(out_dir / f"{path.stem}_depth.png")
            cv2.imwrite(str(written[-1]), to_png16(depth))
        print(f"{path} -> {', '.join(str(p) for p in written)}")
    return 2 if failures else 0
