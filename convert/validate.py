"""Accuracy metrics between two relative inverse-depth maps, and validation of converted IRs.

MiDaS predicts inverse depth up to an unknown scale and shift, so maps are compared after a least-squares
scale-and-shift fit of the prediction to the reference (the alignment of the MiDaS paper). The metric
functions are pure numpy, take maps of any equal shape and are cheap enough for per-frame use.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import openvino as ov

# Reference values at or below this fraction of the reference's maximum are left out of relative metrics:
# a final ReLU makes the far background exactly 0 in inverse depth, where a relative error is undefined.
_VALID_FRACTION = 1e-3


def valid_mask(reference: np.ndarray) -> np.ndarray:
    """Boolean mask (same shape as ``reference``) of the values large enough for relative metrics."""
    ref = np.asarray(reference, dtype=np.float64)
    peak = float(np.max(ref)) if ref.size else 0.0
    return ref > max(peak * _VALID_FRACTION, 0.0)


def fit_scale_shift(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares ``(s, t)`` minimising ``sum((s * pred + t - ref) ** 2)`` over ``mask`` (default: all).

    Returns ``(1.0, mean(ref - pred))`` when ``pred`` is constant, where the scale is undetermined.
    """
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if mask is not None:
        p, r = p[mask], r[mask]
    p_mean, r_mean = float(p.mean()), float(r.mean())
    var = float(np.square(p - p_mean).sum())
    if var == 0.0:
        return 1.0, r_mean - p_mean
    scale = float(((p - p_mean) * (r - r_mean)).sum()) / var
    return scale, r_mean - scale * p_mean


def align(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``pred`` scaled and shifted onto ``ref`` (fit on ``valid_mask(ref)``); float64, shape of ``pred``."""
    scale, shift = fit_scale_shift(pred, ref, valid_mask(ref))
    return scale * np.asarray(pred, dtype=np.float64) + shift


def abs_rel(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean of ``|pred - ref| / ref`` over ``valid_mask(ref)`` (no alignment; 0 is perfect)."""
    mask = valid_mask(ref)
    p = np.asarray(pred, dtype=np.float64)[mask]
    r = np.asarray(ref, dtype=np.float64)[mask]
    return float(np.mean(np.abs(p - r) / r))


def aligned_abs_rel(pred: np.ndarray, ref: np.ndarray) -> float:
    """AbsRel of ``pred`` against ``ref`` after the least-squares scale-and-shift fit."""
    return abs_rel(align(pred, ref), ref)


def delta1(pred: np.ndarray, ref: np.ndarray, threshold: float = 1.25) -> float:
    """Fraction of valid pixels with ``max(p / r, r / p) < threshold`` after alignment (1 is perfect).

    Aligned values at or below zero count as wrong: they have no ratio to a positive reference.
    """
    mask = valid_mask(ref)
    p = align(pred, ref)[mask]
    r = np.asarray(ref, dtype=np.float64)[mask]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(p / r, r / p)
    return float(np.mean((p > 0) & (ratio < threshold)))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the flattened maps; 0.0 when either is constant."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x = x - x.mean()
    y = y - y.mean()
    denom = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return float(np.dot(x, y)) / denom if denom > 0 else 0.0


def max_relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """``max |out - ref| / max |ref|``: the figure for two runs of the same network (no alignment)."""
    o = np.asarray(out, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    peak = float(np.abs(r).max())
    return float(np.abs(o - r).max()) / peak if peak > 0 else float(np.abs(o - r).max())


@dataclass(frozen=True, slots=True)
class Agreement:
    """How closely one model's outputs follow a reference model's over a set of images (means over images)."""

    images: int
    pearson: float
    abs_rel: float
    delta1: float


def agreement(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray]) -> Agreement:
    """Mean per-image Pearson, aligned AbsRel and delta1 of ``preds`` against ``refs`` (equal-length lists)."""
    if len(preds) != len(refs) or not preds:
        raise ValueError("agreement needs two equally long, non-empty lists of maps")
    return Agreement(
        images=len(preds),
        pearson=float(np.mean([pearson(p, r) for p, r in zip(preds, refs, strict=True)])),
        abs_rel=float(np.mean([aligned_abs_rel(p, r) for p, r in zip(preds, refs, strict=True)])),
        delta1=float(np.mean([delta1(p, r) for p, r in zip(preds, refs, strict=True)])),
    )


def at_size(model: ov.Model, size: tuple[int, int]) -> ov.Model:
    """``model`` (one (1, H, W, 3) input) with a static input of ``size`` = (W, H): itself if it has it, else a
    reshaped copy (the caller's model is never changed)."""
    width, height = size
    shape = ov.PartialShape([1, height, width, 3])
    if model.input(0).partial_shape == shape:
        return model
    reshaped = model.clone()
    reshaped.reshape(shape)
    return reshaped


def run_ir(model: ov.Model, frames: Sequence[np.ndarray], core: ov.Core | None = None) -> list[np.ndarray]:
    """Outputs of an edge-depth IR for (h, w, 3) uint8 BGR frames: a list of (h, w) float32 maps.

    Frames may differ in size (the daemon's resizer keeps each source's aspect ratio): the model is
    reshaped and compiled once per size. Computed in f32 wherever the IR has no INT8 layers: CPUs with
    bfloat16 support otherwise run FP32 and FP16 IRs in bf16 by default, which would hide the
    conversion's own error behind bf16 rounding.
    """
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    core = core or ov.Core()
    requests: dict[tuple[int, int], ov.InferRequest] = {}
    outputs = []
    for frame in frames:
        size = (frame.shape[1], frame.shape[0])
        if size not in requests:
            requests[size] = core.compile_model(at_size(model, size), "CPU", config).create_infer_request()
        outputs.append(np.array(requests[size].infer({0: frame[None]})[0][0], dtype=np.float32))
    return outputs


@dataclass(frozen=True, slots=True)
class Throughput:
    """Inferences per second with the THROUGHPUT hint, and the precision the CPU plugin chose to compute in."""

    fps: float
    requests: int
    inference_precision: str


def throughput(model: ov.Model, frame: np.ndarray, seconds: float, core: ov.Core | None = None) -> Throughput:
    """Inferences per second of ``model`` on one repeated (H, W, 3) uint8 frame (at the model's input size),
    with the plugin's defaults.

    THROUGHPUT hint with as many requests in flight as OpenVINO suggests (``AsyncInferQueue``), as the
    daemon runs it; one warm-up round first so that the figure excludes first-inference costs.
    """
    compiled = (core or ov.Core()).compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    jobs = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    queue = ov.AsyncInferQueue(compiled, jobs)
    batch = frame[None]
    for _ in range(jobs):
        queue.start_async({0: batch})
    queue.wait_all()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        queue.start_async({0: batch})  # blocks while every request is busy
        done += 1
    queue.wait_all()
    fps = done / (time.perf_counter() - start)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    return Throughput(fps, jobs, precision.get_type_name() if isinstance(precision, ov.Type) else str(precision))
