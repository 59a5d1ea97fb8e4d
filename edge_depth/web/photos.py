"""'Try a photo': one uploaded image through the daemon's own engine, without starving the cameras.

One worker thread runs inferences one at a time and at most ``queue`` more may wait: beyond that the console
answers 503 at once rather than pile up work. Photos are inferred at the size the daemon compiled at start
(:attr:`EngineFacts.infer_size`), so an upload never triggers a compile. Results are kept in a small LRU keyed by
the SHA-256 of the upload's bytes: a repeat is answered without inference, and says so.

What a client sent is checked before any decoding: size in bytes (413), a known image signature (415), the
pixel count read from the header where the format allows (413, before a decompression bomb allocates), and
then whether it decodes (422). Every refusal is a :class:`PhotoError` with a one-line message, never a traceback.
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from edge_depth.depthstats import robust_range
from edge_depth.model.preprocess import Resizer
from edge_depth.outputs.heatmap import COLORMAPS, colorize, encode_jpeg

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_MAX_HEATMAP_SIDE = 1280  # px: the heatmap download is for looking at, the depth PNG carries the data
_JPEG_QUALITY = 90


class PhotoError(Exception):
    """An upload the console refuses: ``status`` is the HTTP status (413, 415, 422, 503), the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PhotoResult:
    """One photo's depth: ``key`` the SHA-256 of the upload, ``size`` (width, height) of the photo, ``infer_size``
    (width, height) it was inferred at, ``infer_ms`` the inference time, ``heatmap_jpeg`` at the photo's aspect
    (longer side at most 1280 px), ``depth_png16`` and ``depth_npy`` at ``infer_size`` (relative inverse depth:
    the PNG scaled so that its maximum is 65535)."""

    key: str
    format: str
    size: tuple[int, int]
    infer_size: tuple[int, int]
    infer_ms: float
    heatmap_jpeg: bytes
    depth_png16: bytes
    depth_npy: bytes


def image_format(data: bytes) -> str | None:
    """The format named by the file's signature (JPEG, PNG, BMP, TIFF, WebP), None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


# Header fields read without decoding: PNG's IHDR ends at byte 24; JPEG segments start with 0xFF and a marker.
_PNG_HEADER_BYTES = 24
_JPEG_MARKER = 0xFF
_JPEG_SOI, _JPEG_TEM = 0xD8, 0x01  # start of image, temporary: markers without a length
_JPEG_RST0, _JPEG_RST7 = 0xD0, 0xD7  # restart markers: no length either
_JPEG_SOF0, _JPEG_SOF15 = 0xC0, 0xCF  # start-of-frame markers carry the size...
_JPEG_NOT_SOF = (0xC4, 0xC8, 0xCC)  # ...except DHT, JPG and DAC in that range


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None when it is not found there."""
    if fmt == "PNG" and len(data) >= _PNG_HEADER_BYTES and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if fmt == "JPEG":
        i = 2
        while i + 9 <= len(data):
            if data[i] != _JPEG_MARKER:
                return None
            marker = data[i + 1]
            if marker in (_JPEG_SOI, _JPEG_TEM) or _JPEG_RST0 <= marker <= _JPEG_RST7:
                i += 2
                continue
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if _JPEG_SOF0 <= marker <= _JPEG_SOF15 and marker not in _JPEG_NOT_SOF:  # start of frame
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            i += 2 + length
    return None


def to_png16(depth: np.ndarray) -> np.ndarray:
    """(H, W) float32 inverse depth -> uint16 scaled so the image's maximum is 65535 (relative values only)."""
    peak = float(np.nanmax(depth)) if depth.size else 0.0
    scale = 65535.0 / peak if peak > 0 else 0.0
    return np.clip(np.nan_to_num(depth * scale), 0, 65535).astype(np.uint16)


class PhotoDepth:
    """Checks, caches and infers uploaded photos; see the module docstring.

    ``infer``: (h, w, 3) uint8 BGR at ``infer_size`` -> (h, w) float32 inverse depth (the daemon's engine).
    ``max_bytes`` and ``max_pixels`` bound an upload; ``queue`` photos may wait behind the one running; ``cache``
    results are kept (0: none).
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        infer_size: tuple[int, int],
        *,
        max_bytes: int,
        max_pixels: int,
        queue: int,
        cache: int,
        colormap: str = "inferno",
    ) -> None:
        self._infer = infer
        self._resize = Resizer(fixed_size=infer_size)
        self.infer_size = infer_size
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._colormap = COLORMAPS[colormap]
        self._slots = threading.BoundedSemaphore(queue + 1)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-photo")
        self._cache: OrderedDict[str, PhotoResult] = OrderedDict()
        self._cache_size = cache
        self._lock = threading.Lock()
        self.inferences = 0

    def cached(self, key: str) -> PhotoResult | None:
        with self._lock:
            result = self._cache.get(key)
            if result is not None:
                self._cache.move_to_end(key)
            return result

    def submit(self, data: bytes) -> tuple[Future[PhotoResult], bool]:
        """Check ``data`` and start its inference: (the result to come, whether it came from the cache).

        Raises :class:`PhotoError` for a refused upload or a full queue (503).
        """
        if len(data) > self.max_bytes:
            raise PhotoError(413, f"the photo is {len(data) / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:g} MB")
        fmt = image_format(data)
        if fmt is None:
            raise PhotoError(415, "not an image: send a JPEG, PNG, BMP, TIFF or WebP file")
        key = hashlib.sha256(data).hexdigest()
        hit = self.cached(key)
        if hit is not None:
            done: Future[PhotoResult] = Future()
            done.set_result(hit)
            return done, True
        size = header_size(data, fmt)
        if size is not None:
            self._check_pixels(*size)
        if not self._slots.acquire(blocking=False):
            raise PhotoError(503, "busy: other photos are being processed; try again in a few seconds")
        try:
            future = self._worker.submit(self._run, data, fmt, key)
        except RuntimeError:  # the worker is shut down: the daemon is stopping
            self._slots.release()
            raise PhotoError(503, "the daemon is stopping") from None
        future.add_done_callback(lambda _: self._slots.release())
        return future, False

    def _check_pixels(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise PhotoError(
                413, f"the photo has {width}x{height} pixels; the limit is {self.max_pixels / 1e6:g} megapixels"
            )

    def _run(self, data: bytes, fmt: str, key: str) -> PhotoResult:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise PhotoError(422, f"broken image: the {fmt} data cannot be decoded (truncated or corrupt?)")
        height, width = image.shape[:2]
        self._check_pixels(width, height)
        started = time.monotonic()
        depth = self._infer(self._resize(image))
        infer_ms = (time.monotonic() - started) * 1000.0
        low, high = robust_range(depth)
        scale = min(1.0, _MAX_HEATMAP_SIDE / max(width, height))
        heat_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        heat = cv2.resize(colorize(depth, low, high, self._colormap), heat_size, interpolation=cv2.INTER_LINEAR)
        ok, png = cv2.imencode(".png", to_png16(depth))
        if not ok:
            raise PhotoError(422, "the depth PNG could not be encoded")
        npy = io.BytesIO()
        np.save(npy, depth.astype(np.float32), allow_pickle=False)
        result = PhotoResult(
            key=key,
            format=fmt,
            size=(width, height),
            infer_size=self.infer_size,
            infer_ms=infer_ms,
            heatmap_jpeg=encode_jpeg(heat, _JPEG_QUALITY),
            depth_png16=png.tobytes(),
            depth_npy=npy.getvalue(),
        )
        with self._lock:
            self.inferences += 1
            if self._cache_size:
                self._cache[key] = result
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return result

    def close(self) -> None:
        """Refuse new photos; the one running finishes on its own (the engine is not interrupted)."""
        self._worker.shutdown(wait=False, cancel_futures=True)
