"""INT8 post-training quantization with NNCF, optionally gated on accuracy against the FP32 model.

The model quantized is the FP32 model WITH the daemon's preprocessing, so calibration items are what the
daemon feeds: (1, h, w, 3) uint8 BGR frames made by its resizer, whose sizes follow each source's aspect
ratio and so need not match the IR's static size, nor each other. NNCF is then given a copy of the model
with dynamic H and W (its OpenVINO backend collects per-channel statistics, which do not depend on the
spatial size), and the quantized model is reshaped back to the static size the IR is saved at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import openvino as ov

from convert import AccuracyGateError
from convert.validate import aligned_abs_rel, run_ir


def _batch(frame: np.ndarray) -> np.ndarray:
    return frame[None]


def _for_frames(model: ov.Model, frames: Sequence[np.ndarray]) -> ov.Model:
    """A copy of ``model`` (one (1, H, W, 3) input) that runs every frame: dynamic H and W unless all frames
    have the model's own static size."""
    copy = model.clone()
    shape = model.input(0).partial_shape
    if any(ov.PartialShape([1, *f.shape]) != shape for f in frames):
        copy.reshape(ov.PartialShape([1, -1, -1, 3]))
    return copy


def _static_as(quantized: ov.Model, model: ov.Model) -> ov.Model:
    """``quantized`` with ``model``'s input shape again (its FakeQuantize nodes do not depend on it)."""
    shape = model.input(0).partial_shape
    if quantized.input(0).partial_shape != shape:
        quantized.reshape(shape)
    return quantized


def quantize(model: ov.Model, frames: Sequence[np.ndarray]) -> ov.Model:
    """INT8 copy of ``model`` calibrated on ``frames`` ((h, w, 3) uint8 BGR, any sizes), all of them used.

    NNCF's defaults (symmetric "performance" preset, fast bias correction) are what OpenVINO's CPU plugin
    runs fastest, and they are the setting whose speed NOTES.md measured (55-64 FPS at 256x256).
    """
    import nncf  # noqa: PLC0415 -- NNCF takes seconds to import and pulls in torch: only for INT8

    dataset = nncf.Dataset(list(frames), _batch)
    return _static_as(nncf.quantize(_for_frames(model, frames), dataset, subset_size=len(frames)), model)


# Each accuracy-control iteration reverts one more group of layers to FP32 and re-validates; NNCF's
# default is unbounded. Past a few dozen reverted groups INT8 has lost most of its speed, so stop there.
MAX_REVERT_ITERATIONS = 30


def quantize_with_max_drop(
    model: ov.Model,
    frames: Sequence[np.ndarray],
    validation: Sequence[np.ndarray],
    max_drop: float,
    max_iterations: int | None = None,
) -> ov.Model:
    """INT8 copy of ``model`` whose aligned AbsRel against ``model`` on ``validation`` stays <= ``max_drop``.

    NNCF's accuracy control reverts the layers that cost most accuracy to FP32 until the metric's drop
    is met. The metric is 1 - mean aligned AbsRel against the FP32 outputs (NNCF wants higher = better
    and divides by the FP32 score), so the FP32 model scores 1 and the drop is the INT8 model's AbsRel.
    At most ``max_iterations`` (default ``MAX_REVERT_ITERATIONS``) groups are reverted. Raises
    ``AccuracyGateError`` when even the partly reverted model misses ``max_drop``.
    """
    iterations = MAX_REVERT_ITERATIONS if max_iterations is None else max_iterations
    import nncf  # noqa: PLC0415 -- NNCF takes seconds to import and pulls in torch: only for INT8

    references = run_ir(model, validation)
    items = list(zip(validation, references, strict=True))

    def metric(compiled: Any, data: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[float]]:
        per_item = [1.0 - aligned_abs_rel(np.asarray(compiled(_batch(frame))[0])[0], ref) for frame, ref in data]
        return float(np.mean(per_item)), per_item

    calibration = nncf.Dataset(list(frames), _batch)
    validation_set = nncf.Dataset(items, lambda item: _batch(item[0]))
    quantized = nncf.quantize_with_accuracy_control(
        _for_frames(model, [*frames, *validation]),
        calibration,
        validation_set,
        metric,
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(frames),
        advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(max_num_iterations=iterations),
    )
    quantized = _static_as(quantized, model)
    # NNCF returns its best effort when the drop cannot be met: check it ourselves
    achieved = float(
        np.mean([aligned_abs_rel(p, r) for p, r in zip(run_ir(quantized, validation), references, strict=True)])
    )
    if achieved > max_drop:
        raise AccuracyGateError(
            f"INT8 misses --max-drop {max_drop:g}: its AbsRel against FP32 is {achieved:.4f} with up to "
            f"{iterations} groups of sensitive layers reverted to FP32; raise --max-drop, calibrate on more "
            "typical frames (--calib), or use fp16"
        )
    return quantized
