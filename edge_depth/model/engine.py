"""Depth inference with OpenVINO: one Core, the IR read once, compiled once per input shape.

Requests run asynchronously so that decoding, resizing, heatmaps, alerts and publishing overlap with the
model. Completed requests are handed to a callback in OpenVINO's thread; the callback only copies the output
and passes it on. The engine keeps its own pool of ``InferRequest``s rather than an ``AsyncInferQueue``:
starting a frame then costs the caller about half the CPU (measured on 2 cores: 60 against 115 us a frame),
and the pool already has the bookkeeping a queue would repeat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edge_depth.frames import DepthFrame, Frame
from edge_depth.model.contract import (
    INPUT_NAME,
    MIDAS_V21_SMALL,
    PRECISION_KEY,
    ModelSpec,
    SpecError,
    read_rt_info,
    read_spec,
)
from edge_depth.model.preflight import openvino_message

log = logging.getLogger(__name__)


class ModelError(Exception):
    """The IR is missing, unreadable or not an edge-depth IR, does not fit the input size asked for, or cannot
    be compiled for the device.

    One line naming the setting (``model.path``, ``model.input_size``, ``model.device``) or the file, and
    OpenVINO's own reason without its C++ prefixes.
    """


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the daemon runs, as reported in status payloads and by ``bench``."""

    path: Path
    name: str
    precision: str
    ir_input_size: tuple[int, int]  # (width, height) the IR was saved with
    device: str  # what the user asked for
    hint: str
    execution_devices: tuple[str, ...] = field(default=())  # what OpenVINO actually runs on
    # What the plugin computes in: an FP32 IR runs in bf16 on CPUs with AVX-512 BF16 or AMX unless told otherwise.
    inference_precision: str = ""
    # How frames must be resized for this model (stored in the IR by `convert`; MiDaS for older IRs)
    spec: ModelSpec = MIDAS_V21_SMALL


def check_input_size(size: tuple[int, int], spec: ModelSpec, path: Path) -> None:
    """Raise ``ModelError`` naming ``model.input_size`` when ``size`` = (width, height) does not fit ``spec``."""
    problem = spec.size_problem(size)
    if problem is not None:
        raise ModelError(f"model.input_size: {size[0]}x{size[1]} does not fit {path.name} ({spec.name}): {problem}")


def _inference_precision(compiled: ov.CompiledModel) -> str:
    try:
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").to_string())
    except (RuntimeError, AttributeError):  # a device without the property
        return ""


def read_model(core: ov.Core, path: Path) -> ov.Model:
    """Read and check an edge-depth IR: input ``image`` u8 [1, H, W, 3] BGR, one output (``depth`` [1, H, W])."""
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (make one with `edge-depth convert`)")
    if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise ModelError(f"{path.with_suffix('.bin')}: weights file of the IR not found")
    try:
        model = core.read_model(path)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a readable OpenVINO model ({first})") from exc
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or INPUT_NAME not in inputs[0].get_names() or inputs[0].get_element_type() != ov.Type.u8:
        raise ModelError(f"{path}: expected one u8 input named '{INPUT_NAME}' (an IR made by `edge-depth convert`)")
    if len(outputs) != 1:
        raise ModelError(f"{path}: expected one output, found {len(outputs)}")
    return model


def read_model_spec(model: ov.Model, path: Path) -> ModelSpec:
    """The spec stored in the IR (MiDaS v2.1 small for IRs converted before specs were stored)."""
    try:
        return read_spec(model)
    except SpecError as exc:
        raise ModelError(f"{path}: rt_info {exc}") from None


def _default_requests(hint: str, optimal: int) -> int:
    """Requests to create when ``model.infer_requests`` is 0.

    LATENCY: OpenVINO's optimal number (one), so that one frame at a time gets every core. THROUGHPUT hints:
    twice it. A finished request's callback needs the GIL, which the output worker often holds; with only
    the optimal number, the stream sits idle until the callback has run. A second request per stream starts
    at once instead (measured on 2 cores, INT8: +3 % FPS with one camera, +6 % with four).
    """
    return optimal if hint == "LATENCY" else 2 * optimal


class DepthEngine:
    """Compiles the IR per input shape and runs frames through it asynchronously.

    ``submit`` blocks while every request of that shape is busy, which is the pipeline's backpressure.
    ``on_result`` receives a ``DepthFrame`` in an OpenVINO thread, possibly out of submission order
    when several requests run at once.
    """

    def __init__(
        self,
        path: Path,
        *,
        device: str = "CPU",
        hint: str = "THROUGHPUT",
        infer_requests: int = 0,
        inference_precision: str = "auto",
        cache_dir: Path | None = None,
        core: ov.Core | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """``input_size``: the fixed (width, height) of ``model.input_size``, checked against the model's
        size multiple here so that a bad setting fails at start, not at the first frame; None for auto."""
        self._core = core or ov.Core()
        if cache_dir is not None:
            self._core.set_property({"CACHE_DIR": str(cache_dir)})
        self._model = read_model(self._core, path)
        spec = read_model_spec(self._model, path)
        if input_size is not None:
            check_input_size(input_size, spec, path)
        self._device = device
        self._hint = hint
        self._infer_requests = infer_requests
        self._inference_precision_hint = inference_precision
        self._compiled: dict[tuple[int, int], tuple[ov.CompiledModel, _Pool]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition()  # guards every pool's free list, _busy and _capacity
        self._busy = 0  # requests started and not yet completed, all shapes
        self._capacity = 0  # requests of all compiled shapes
        # THROUGHPUT: one frame stands ready for the next free request, so no stream waits on Python between
        # requests (measured: ~3 % FPS). LATENCY: a frame is taken only once a request is free, so it is the newest.
        self._ready_ahead = 0 if hint == "LATENCY" else 1
        self._on_result: Callable[[DepthFrame], None] | None = None
        self.load_error: ModelError | None = None
        """The first compile that failed in ``submit`` (a new input size at run time); the daemon stops with it."""
        shape = self._model.inputs[0].get_partial_shape()
        h = shape[1].get_length() if shape[1].is_static else 0
        w = shape[2].get_length() if shape[2].is_static else 0
        self._execution_devices: tuple[str, ...] = ()
        self._inference_precision = ""
        self._info = ModelInfo(
            path=path,
            name=spec.name,
            precision=read_rt_info(self._model, PRECISION_KEY, "unknown"),
            ir_input_size=(w, h),
            device=device,
            hint=hint,
            spec=spec,
        )

    @property
    def info(self) -> ModelInfo:
        """The model, and the devices OpenVINO really executes on once something is compiled."""
        return replace(
            self._info, execution_devices=self._execution_devices, inference_precision=self._inference_precision
        )

    def set_result_callback(self, on_result: Callable[[DepthFrame], None]) -> None:
        self._on_result = on_result

    def compile(self, size: tuple[int, int]) -> ov.CompiledModel:
        """Compile (once) for a (width, height) input and return the compiled model."""
        with self._lock:
            if size not in self._compiled:
                self._compiled[size] = self._compile(size)
            return self._compiled[size][0]

    def _compile(self, size: tuple[int, int]) -> tuple[ov.CompiledModel, _Pool]:
        """Reshape and compile for ``size``; raises ``ModelError`` naming the setting for whatever OpenVINO refuses."""
        w, h = size
        started = time.monotonic()
        name = self._info.path.name
        model = self._model.clone()
        try:
            model.reshape({INPUT_NAME: [1, h, w, 3]})
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"model.input_size: {name} cannot take {w}x{h} input: {openvino_message(exc)}") from None
        config: dict[str, Any] = {"PERFORMANCE_HINT": self._hint}
        if self._infer_requests:
            config["PERFORMANCE_HINT_NUM_REQUESTS"] = self._infer_requests
        if self._inference_precision_hint != "auto":
            config["INFERENCE_PRECISION_HINT"] = self._inference_precision_hint
        try:
            compiled = self._core.compile_model(model, self._device, config)
            jobs = self._infer_requests or _default_requests(
                self._hint, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            )
            pool = _Pool([compiled.create_infer_request() for _ in range(jobs)])
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ModelError(
                f"model.device: {self._device}: cannot compile {name} for {w}x{h}: {openvino_message(exc)}"
            ) from None
        for slot, request in enumerate(pool.requests):
            request.set_callback(self._completed, (pool, slot))
        with self._idle:
            self._capacity += jobs
        devices = tuple(str(d) for d in compiled.get_property("EXECUTION_DEVICES"))
        self._execution_devices = devices
        self._inference_precision = _inference_precision(compiled)
        log.info(
            "compiled %s (%s) for %dx%d on %s, %s hint, %d requests in %.1f s",
            self._info.path.name,
            self._info.precision,
            w,
            h,
            ",".join(devices),
            self._hint,
            jobs,
            time.monotonic() - started,
        )
        return compiled, pool

    def requests(self, size: tuple[int, int]) -> int:
        self.compile(size)
        return len(self._compiled[size][1].requests)

    def submit(self, frame: Frame) -> None:
        """Start inference on ``frame`` (its image at the model's input size). Blocks while all requests are busy.

        A first frame of a new size compiles the model for it. When that fails the error is kept in
        ``load_error`` (the daemon stops with it: the model cannot run this camera) and, from then on, no frame
        is run: it is dropped here rather than raised into the dispatcher, which would only log it again.
        """
        h, w = frame.image.shape[:2]
        if self.load_error is not None:
            return
        try:
            self.compile((w, h))
        except ModelError as exc:
            self.load_error = exc
            return
        pool = self._compiled[(w, h)][1]
        with self._idle:
            self._idle.wait_for(lambda: pool.free)
            slot = pool.free.pop()
            self._busy += 1
        request = pool.requests[slot]
        pool.jobs[slot] = (frame, time.monotonic())
        try:
            request.get_input_tensor(0).data[0] = frame.image  # the request's own buffer: nothing to keep alive
            request.start_async()
        except BaseException:
            self._request_done(pool, slot)
            raise

    def wait_idle(self, timeout: float) -> bool:
        """True once a frame submitted now starts without waiting for long; False after ``timeout`` seconds.

        LATENCY hint: once a request is free. THROUGHPUT: also while one frame more than there are requests
        would wait for the next request to finish. (With several input shapes, requests of other shapes
        count too.) True before anything is compiled. Lets the dispatcher take a camera's newest frame only
        when it can start it, rather than hold one that ages while every request is busy.
        """
        with self._idle:
            return self._idle.wait_for(self._has_room, timeout)

    def _has_room(self) -> bool:
        return not self._capacity or self._busy < self._capacity + self._ready_ahead

    def _request_done(self, pool: _Pool, slot: int) -> None:
        pool.jobs[slot] = None
        with self._idle:
            pool.free.append(slot)
            self._busy -= 1
            self._idle.notify_all()  # the dispatcher's wait_idle and a submit waiting for this pool

    def _completed(self, where: tuple[_Pool, int]) -> None:
        pool, slot = where
        try:
            job = pool.jobs[slot]
            if job is not None:
                self._deliver(pool.requests[slot], job)
        finally:
            self._request_done(pool, slot)

    def _deliver(self, request: ov.InferRequest, job: tuple[Frame, float]) -> None:
        frame, submitted = job
        # The request's output buffer is reused by the next inference: copy it out.
        depth = request.get_output_tensor(0).data[0].copy()
        result = DepthFrame(
            camera=frame.camera,
            seq=frame.seq,
            captured_mono=frame.captured_mono,
            captured_wall=frame.captured_wall,
            image=frame.image,
            depth=depth,
            infer_ms=(time.monotonic() - submitted) * 1000.0,
            source_size=frame.source_size,
        )
        if self._on_result is not None:
            self._on_result(result)

    def infer(self, image: np.ndarray) -> np.ndarray:
        """Synchronous inference for one-shot use: (h, w, 3) uint8 BGR -> (h, w) float32 inverse depth."""
        h, w = image.shape[:2]
        compiled = self.compile((w, h))
        out = compiled({INPUT_NAME: image[np.newaxis]})
        return np.asarray(out[compiled.output(0)][0], dtype=np.float32).copy()

    def wait_all(self) -> None:
        """Wait for every request in flight (ordered shutdown: results are delivered before publishing stops)."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)


class _Pool:
    """The inference requests of one compiled shape: ``free`` slots (guarded by the engine's condition) and
    each busy slot's job, the (frame, monotonic s submitted) its callback delivers."""

    def __init__(self, requests: list[ov.InferRequest]) -> None:
        self.requests = requests
        self.free = list(range(len(requests)))
        self.jobs: list[tuple[Frame, float] | None] = [None] * len(requests)
