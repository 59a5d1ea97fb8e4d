"""PyTorch or ONNX model -> OpenVINO model with the daemon's interface, and saving it as IR.

The interface is the model contract (``edge_depth.model.contract``): ONE input ``image``, (1, H, W, 3)
uint8 BGR as OpenCV decodes it, and ONE output ``depth``, (1, H, W) float32 relative inverse depth. The
spec's preprocessing (BGR -> RGB, /255, mean/std) runs inside the IR, so the daemon only resizes frames.
The IR is saved static at the chosen size and can be reshaped at load time to any multiple of the spec's
``multiple``; the spec itself is stored in the IR's runtime info.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openvino as ov

from convert import ConvertError
from edge_depth.model.contract import INPUT_NAME, OUTPUT_NAME, PIXEL_SCALE, ModelSpec, write_rt_info, write_spec

if TYPE_CHECKING:
    import torch

_NCHW_RANK = 4  # (1, C, H, W)


@contextmanager
def _root_logging_kept() -> Iterator[None]:
    """``ov.convert_model`` sets the root logger's level to ERROR (its ``init_logger``), which silences every
    warning of the calling program afterwards; put the level back."""
    root = logging.getLogger()
    level = root.level
    try:
        yield
    finally:
        root.setLevel(level)


def torch_to_ov(model: torch.nn.Module, size: tuple[int, int]) -> ov.Model:
    """The PyTorch model as an OpenVINO model with its own interface: (1, 3, H, W) float32 normalised RGB.

    PyTorch's trace check reports "Graphs differed across invocations" on this network, although the
    graph is the same; tracing without it and converting the trace works (NOTES.md, section 1).
    """
    import torch  # noqa: PLC0415 -- torch only when converting from PyTorch: --onnx runs without it

    trace: Callable[..., Any] = torch.jit.trace  # torch ships it unannotated
    width, height = size
    example = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        traced = trace(model.eval(), example, check_trace=False)
    with _root_logging_kept():
        converted = ov.convert_model(traced, example_input=example)
    converted.reshape([1, 3, height, width])
    return converted


def onnx_to_ov(path: Path, size: tuple[int, int]) -> ov.Model:
    """An ONNX depth model (e.g. the official ``model-small.onnx``) as an OpenVINO model at ``size``.

    The model must take one (1, 3, H, W) float input and give one (1, H, W) or (1, 1, H, W) output.
    """
    width, height = size
    try:
        with _root_logging_kept():
            converted = ov.convert_model(str(path))
    except Exception as exc:  # OpenVINO's frontends raise their own types for every kind of bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConvertError(f"{path}: not an ONNX model OpenVINO can read: {reason[:160]}") from exc
    if len(converted.inputs) != 1 or len(converted.outputs) != 1 or converted.input(0).partial_shape.rank != _NCHW_RANK:
        raise ConvertError(f"{path}: expected one (1, 3, H, W) input and one output, as MiDaS v2.1 small has")
    try:
        converted.reshape([1, 3, height, width])
    except Exception as exc:
        raise ConvertError(f"{path}: cannot be reshaped to {width}x{height}: {str(exc).splitlines()[0]}") from exc
    shape = converted.output(0).partial_shape
    if shape not in (ov.PartialShape([1, height, width]), ov.PartialShape([1, 1, height, width])):
        raise ConvertError(
            f"{path}: output is {shape} for a {width}x{height} input; the daemon needs a (1, {height}, {width}) "
            f"or (1, 1, {height}, {width}) depth map at the input size"
        )
    return converted


def with_preprocessing(model: ov.Model, spec: ModelSpec) -> ov.Model:
    """``model`` (1, 3, H, W) normalised in, (1, H, W) or (1, 1, H, W) out -> the ``image`` -> ``depth``
    interface, (1, H, W, 3) u8 BGR in, (1, H, W) f32 out, with ``spec``'s colour order and mean/std."""
    ppp = ov.preprocess.PrePostProcessor(model)
    source = ppp.input()
    source.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ov.preprocess.ColorFormat.BGR
    )
    source.model().set_layout(ov.Layout("NCHW"))
    steps = source.preprocess().convert_element_type(ov.Type.f32)
    if spec.color == "RGB":
        steps = steps.convert_color(ov.preprocess.ColorFormat.RGB)
    # (x / 255 - mean) / std == (x - 255 mean) / (255 std): one subtraction and one multiplication
    steps.mean([PIXEL_SCALE * m for m in spec.mean]).scale([PIXEL_SCALE * s for s in spec.std])
    output = ppp.output()
    if model.output(0).partial_shape.rank == _NCHW_RANK:
        # the daemon's depth is (1, H, W): drop the single channel inside the IR
        output.postprocess().custom(lambda node: ov.opset13.squeeze(node, [1]).output(0))
    output.tensor().set_element_type(ov.Type.f32)
    built = ppp.build()
    built.input(0).get_tensor().set_names({INPUT_NAME})
    built.input(0).get_node().set_friendly_name(INPUT_NAME)
    built.output(0).get_tensor().set_names({OUTPUT_NAME})
    return built


def set_metadata(model: ov.Model, spec: ModelSpec, metadata: Mapping[str, str]) -> None:
    """Store ``spec`` and ``metadata`` in the IR's runtime info (read back with ``edge_depth.model.contract``)."""
    write_spec(model, spec)
    write_rt_info(model, metadata)


def ir_path(out_dir: Path, precision: str, spec: ModelSpec) -> Path:
    return out_dir / spec.ir_name(precision)


def save_ir(model: ov.Model, xml: Path, precision: str) -> None:
    """Write ``xml`` and its ``.bin``; FP16 compresses the weights (compute stays in the device's precision)."""
    xml.parent.mkdir(parents=True, exist_ok=True)
    # save_model may transform the model it is given: keep the caller's FP32 model untouched
    ov.save_model(model.clone(), str(xml), compress_to_fp16=precision == "fp16")
