"""``edge-depth convert`` / ``python -m convert``: MiDaS v2.1 small -> OpenVINO IR (FP32, FP16, INT8), validated.

Another depth model converts from ONNX with ``--model-spec FILE`` (its preprocessing facts, see
``convert.model_spec``); the spec is stored in every IR and in the manifest, and the daemon resizes
frames by it.

Exit codes: 0 done; 2 a problem with the input (one ``error:`` line on stderr); 1 an accuracy gate
(``--max-drop``) that cannot be met.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import openvino as ov

from convert import AccuracyGateError, ConvertError, calibration, export, manifest, quantize, validate, weights
from convert.model_spec import load_model_spec
from edge_depth.model.contract import (
    INPUT_NAME,
    MIDAS_V21_SMALL,
    OUTPUT_NAME,
    PIXEL_SCALE,
    PRECISIONS,
    ModelSpec,
    spec_as_dict,
)
from edge_depth.model.preprocess import Resizer

if TYPE_CHECKING:
    import torch

DEFAULT_PRECISIONS = "fp32,int8"
DEFAULT_CALIB_SIZE = 300


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage; the contract is one "error:" line
        raise ConvertError(message)


def _input_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH (e.g. 256x192)") from None
    return width, height  # the model's spec says which sizes fit: checked once it is known


def _model_input_size(args: argparse.Namespace, spec: ModelSpec) -> tuple[int, int]:
    if args.input_size is None:
        return spec.default_input_size
    size: tuple[int, int] = args.input_size
    problem = spec.size_problem(size)
    if problem is not None:
        raise ConvertError(f"argument --input-size: '{size[0]}x{size[1]}': {problem}")
    return size


def _precisions(text: str) -> tuple[str, ...]:
    asked = {p.strip().lower() for p in text.split(",") if p.strip()}
    unknown = sorted(asked - set(PRECISIONS))
    if unknown or not asked:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(PRECISIONS)} (a comma list)")
    return tuple(p for p in PRECISIONS if p in asked)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edge-depth convert",
        description="Convert MiDaS v2.1 small (or, with --onnx and --model-spec, another depth model) to OpenVINO "
        "IR (u8 BGR NHWC 'image' in, 'depth' out), validate it on real images, measure its throughput and record "
        "everything in <out>/manifest.json.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, metavar="PATH", help="local PyTorch weights (.pt state dict)")
    source.add_argument("--onnx", type=Path, metavar="PATH", help="local ONNX model (e.g. model-small.onnx); no torch")
    parser.add_argument("--url", default=weights.OFFICIAL_URL, help="weights to download (default: official v2.1)")
    parser.add_argument("--sha256", metavar="HEX", help="expected sha256 of the weights file")
    parser.add_argument("--cache-dir", type=Path, default=weights.DEFAULT_CACHE_DIR, help="download cache")
    parser.add_argument("--out", type=Path, default=Path("models"), help="output directory (default: models)")
    parser.add_argument(
        "--precision",
        type=_precisions,
        default=_precisions(DEFAULT_PRECISIONS),
        help="fp32,fp16,int8 (default fp32,int8)",
    )
    parser.add_argument(
        "--model-spec",
        type=Path,
        metavar="FILE",
        help="with --onnx: YAML/JSON of the model's preprocessing (name, long_side, multiple, mean, std, ...); "
        "default MiDaS v2.1 small",
    )
    parser.add_argument(
        "--input-size",
        type=_input_size,
        metavar="WxH",
        help="size the IR is saved at (default: long_side x long_side, 256x256 for MiDaS)",
    )
    parser.add_argument("--calib", type=Path, metavar="PATH", help="INT8 calibration: image directory or video file")
    parser.add_argument("--calib-size", type=_positive_int, metavar="N", help="calibration frames (default 300 or all)")
    parser.add_argument("--max-drop", type=float, metavar="D", help="max INT8 AbsRel against FP32 (accuracy control)")
    parser.add_argument("--validate", type=Path, metavar="PATH", help="validation images (default: sample NYU images)")
    parser.add_argument(
        "--bench-seconds", type=_non_negative, default=3.0, metavar="S", help="throughput run (0: skip)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.max_drop is not None and not args.max_drop > 0:
            raise ConvertError(f"argument --max-drop: {args.max_drop} is not a number > 0")
        if args.model_spec is not None and args.onnx is None:
            raise ConvertError("argument --model-spec: only with --onnx (PyTorch weights are MiDaS v2.1 small)")
        spec = MIDAS_V21_SMALL if args.model_spec is None else load_model_spec(args.model_spec)
        run(args, spec, _model_input_size(args, spec))
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AccuracyGateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    return 0


@dataclass(frozen=True, slots=True)
class Converted:
    """The FP32 model with the daemon's interface, and what it was made from."""

    model: ov.Model
    spec: ModelSpec
    weights: weights.WeightsFile
    kind: str  # "pytorch" or "onnx"
    torch_model: torch.nn.Module | None


@dataclass(frozen=True, slots=True)
class Checks:
    """Real images as the daemon feeds them and the reference outputs every converted IR is compared with."""

    frames: list[np.ndarray]  # (h, w, 3) uint8 BGR from the daemon's resizer: the image's aspect ratio
    fp32: list[np.ndarray]  # (h, w) float32 from the in-memory FP32 model
    pytorch: list[np.ndarray] | None  # (h, w) float32 from PyTorch, None for an ONNX source
    bench_frame: np.ndarray  # (H, W, 3) uint8 BGR at the IR's saved size, for the throughput run


def run(args: argparse.Namespace, spec: ModelSpec, size: tuple[int, int]) -> None:
    """Convert, quantize, save, validate and benchmark every precision asked for; ``size`` = (W, H) of the IR."""
    # cheap checks first, so that a typo fails before minutes of conversion
    validation_source = calibration.open_source(
        _default_path(args.validate, calibration.DEFAULT_VALIDATION, "--validate")
    )
    calib_sources = _calibration_sources(args.calib) if "int8" in args.precision else []

    converted = _convert(args, spec, size)
    core = ov.Core()
    # the daemon's own resize (aspect ratio kept, the spec's filter), as `model.input_size: auto` runs it
    resize = Resizer(spec)
    frames = calibration.load_frames([validation_source], resize, desc="validation images")
    checks = Checks(
        frames=frames,
        fp32=validate.run_ir(converted.model, frames, core),
        pytorch=None if converted.torch_model is None else _torch_outputs(converted.torch_model, frames, spec),
        # the throughput figure is for the IR's saved size; a frame's content hardly changes it
        bench_frame=Resizer(spec, size)(frames[0]),
    )
    calib_frames: list[np.ndarray] = []
    if calib_sources:
        wanted = min(args.calib_size or DEFAULT_CALIB_SIZE, sum(s.count for s in calib_sources))
        calib_frames = calibration.load_frames(calib_sources, resize, wanted, desc="calibration frames")
    calib_text = calibration.describe(calib_sources, len(calib_frames)) if calib_sources else "none"

    out_dir: Path = args.out
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConvertError(f"{out_dir}: cannot create the output directory ({exc.strerror or exc})") from exc
    entries = {
        precision: _write_precision(
            args,
            precision,
            converted=converted,
            checks=checks,
            calib_frames=calib_frames,
            calib_text=calib_text,
            core=core,
            size=size,
        )
        for precision in args.precision
    }
    path = manifest.update_manifest(out_dir, entries)
    print(format_table(entries))
    print(f"manifest: {path}")


def _write_precision(
    args: argparse.Namespace,
    precision: str,
    *,
    converted: Converted,
    checks: Checks,
    calib_frames: list[np.ndarray],
    calib_text: str,
    core: ov.Core,
    size: tuple[int, int],
) -> dict[str, Any]:
    """Build, save, validate and benchmark one precision; returns its manifest entry."""
    start = time.perf_counter()
    model = converted.model
    if precision == "int8":
        print(f"quantizing to INT8 with {len(calib_frames)} calibration frames ...", flush=True)
        model = _int8(model, calib_frames, checks.frames, args.max_drop)
    meta = _metadata(converted, precision, size, calib_text if precision == "int8" else "none")
    export.set_metadata(model, converted.spec, meta)
    xml = export.ir_path(args.out, precision, converted.spec)
    export.save_ir(model, xml, precision)
    seconds = time.perf_counter() - start
    print(f"wrote {xml} ({seconds:.1f} s)", flush=True)

    saved = core.read_model(xml)  # validate what is on disk, not what is in memory
    figures = _figures(precision, validate.run_ir(saved, checks.frames, core), checks, converted.kind)
    bench = validate.throughput(saved, checks.bench_frame, args.bench_seconds, core) if args.bench_seconds > 0 else None
    return _entry(
        meta=meta,
        xml=xml,
        converted=converted,
        calib_text=calib_text,
        calib_size=len(calib_frames),
        max_drop=args.max_drop,
        figures=figures,
        bench=bench,
        bench_seconds=args.bench_seconds,
        seconds=seconds,
    )


def _default_path(given: Path | None, default: Path, option: str) -> Path:
    if given is not None:
        return given
    if not default.exists():
        raise ConvertError(f"the repository's sample data ({default.name}) is not here; pass {option} PATH")
    return default


def _calibration_sources(given: Path | None) -> list[calibration.Source]:
    if given is not None:
        return [calibration.open_source(given)]
    missing = [p for p in calibration.DEFAULT_CALIBRATION if not p.exists()]
    if missing:
        raise ConvertError(
            f"the repository's sample calibration data ({missing[0].name}) is not here; pass --calib PATH "
            "(a directory of images or a video file from your camera)"
        )
    return [calibration.open_source(p) for p in calibration.DEFAULT_CALIBRATION]


def _convert(args: argparse.Namespace, spec: ModelSpec, size: tuple[int, int]) -> Converted:
    if args.onnx is not None:
        source = _checked(weights.local_file(args.onnx), args.sha256)
        print(f"converting ONNX model {source.path} ...", flush=True)
        model = export.with_preprocessing(export.onnx_to_ov(source.path, size), spec)
        return Converted(model, spec, source, "onnx", None)

    from convert.midas_small import MidasSmall  # noqa: PLC0415 -- imports torch, which --onnx must not need

    if args.weights is not None:
        source = _checked(weights.local_file(args.weights), args.sha256)
    else:
        source = weights.fetch(args.url, args.cache_dir, args.sha256)
    net = MidasSmall()
    net.load_state_dict(weights.load_state_dict(source.path, net.state_dict()), strict=True)
    net.eval()
    print(f"converting PyTorch weights {source.source} ...", flush=True)
    model = export.with_preprocessing(export.torch_to_ov(net, size), spec)
    return Converted(model, spec, source, "pytorch", net)


def _checked(source: weights.WeightsFile, sha256: str | None) -> weights.WeightsFile:
    if sha256 is not None and source.sha256 != sha256.lower():
        raise ConvertError(f"{source.path}: sha256 is {source.sha256}, expected {sha256.lower()}")
    return source


def _int8(
    fp32: ov.Model, calib: list[np.ndarray], validation_frames: list[np.ndarray], max_drop: float | None
) -> ov.Model:
    if max_drop is None:
        return quantize.quantize(fp32, calib)
    return quantize.quantize_with_max_drop(fp32, calib, validation_frames, max_drop)


def reference_input(frame: np.ndarray, spec: ModelSpec = MIDAS_V21_SMALL) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32: the spec's preprocessing, in numpy, outside the IR."""
    ordered = frame[:, :, ::-1] if spec.color == "RGB" else frame
    scaled = ordered.astype(np.float32) / np.float32(PIXEL_SCALE)
    normalised = (scaled - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


def _torch_outputs(net: torch.nn.Module, frames: Sequence[np.ndarray], spec: ModelSpec) -> list[np.ndarray]:
    import torch  # noqa: PLC0415 -- only the PyTorch path gets here; --onnx must not need torch

    with torch.no_grad():
        return [net(torch.from_numpy(reference_input(f, spec)))[0].numpy() for f in frames]


def _figures(precision: str, outputs: list[np.ndarray], checks: Checks, kind: str) -> dict[str, Any]:
    if precision == "fp32":
        if checks.pytorch is None:
            return {"reference": None, "images": len(outputs), "note": f"{kind} source: no PyTorch model to compare"}
        worst = max(validate.max_relative_error(o, r) for o, r in zip(outputs, checks.pytorch, strict=True))
        return {"reference": "pytorch", "images": len(outputs), "max_rel_error": worst}
    agreed = validate.agreement(outputs, checks.fp32)
    return {
        "reference": "fp32",
        "images": agreed.images,
        "pearson": agreed.pearson,
        "abs_rel": agreed.abs_rel,
        "delta1": agreed.delta1,
    }


def _metadata(converted: Converted, precision: str, size: tuple[int, int], calib_text: str) -> dict[str, str]:
    """The rt_info written besides the spec (which ``export.set_metadata`` stores from ``converted.spec``)."""
    return {
        "precision": precision,
        "input_size": f"{size[0]}x{size[1]}",
        "input": f"{INPUT_NAME}: u8 NHWC [1,H,W,3] BGR",
        "output": f"{OUTPUT_NAME}: f32 [1,H,W] relative inverse depth",
        "normalisation": _normalisation_text(converted.spec),
        "weights_source": converted.weights.source,
        "weights_sha256": converted.weights.sha256,
        "weights_format": converted.kind,
        "calibration": calib_text,
    }


def _normalisation_text(spec: ModelSpec) -> str:
    mean = ",".join(f"{m:g}" for m in spec.mean)
    std = ",".join(f"{s:g}" for s in spec.std)
    order = "BGR->RGB, " if spec.color == "RGB" else ""
    return f"{order}/{PIXEL_SCALE:g}, mean {mean}, std {std} (inside the IR)"


def _entry(  # noqa: PLR0913 -- a manifest entry gathers every figure of one conversion
    *,
    meta: dict[str, str],
    xml: Path,
    converted: Converted,
    calib_text: str,
    calib_size: int,
    max_drop: float | None,
    figures: dict[str, Any],
    bench: validate.Throughput | None,
    bench_seconds: float,
    seconds: float,
) -> dict[str, Any]:
    width, height = (int(v) for v in meta["input_size"].split("x"))
    int8 = meta["precision"] == "int8"
    spec = converted.spec
    return {
        "model": spec.name,
        "precision": meta["precision"],
        "xml": xml.name,
        "bin": xml.with_suffix(".bin").name,
        "input_size": meta["input_size"],
        "input": {
            "name": INPUT_NAME,
            "element_type": "u8",
            "layout": "NHWC",
            "shape": [1, height, width, 3],
            "color": "BGR",
        },
        "output": {
            "name": OUTPUT_NAME,
            "element_type": "f32",
            "shape": [1, height, width],
            "meaning": "relative inverse depth (larger = nearer, unknown scale and shift)",
        },
        "normalisation": {
            "color": spec.color,
            "divide": int(PIXEL_SCALE),
            "mean": list(spec.mean),
            "std": list(spec.std),
            "inside_ir": True,
        },
        "spec": spec_as_dict(spec),  # also in the IR's rt_info; the daemon resizes frames by it
        "weights": {"source": converted.weights.source, "sha256": converted.weights.sha256, "format": converted.kind},
        "calibration": {"source": calib_text, "size": calib_size, "max_drop": max_drop} if int8 else None,
        "tools": manifest.tool_versions(),
        "validation": figures,
        "throughput_fps": None if bench is None else round(bench.fps, 2),
        "throughput": None
        if bench is None
        else {
            "device": "CPU",
            "hint": "THROUGHPUT",
            "requests": bench.requests,
            "inference_precision": bench.inference_precision,
            "seconds": bench_seconds,
        },
        "build_seconds": round(seconds, 2),  # quantization (INT8) and saving
        "created": manifest.now_utc(),
    }


def format_table(entries: dict[str, dict[str, Any]]) -> str:
    """The validation table printed after a conversion (one row per precision)."""
    header = (
        f"{'precision':<9} {'compared with':<14} {'images':>6} {'max rel err':>11} {'pearson':>8} "
        f"{'AbsRel':>8} {'delta1':>7} {'FPS':>7}"
    )
    lines = [header, "-" * len(header)]
    notes = []
    for precision, entry in entries.items():
        v = entry["validation"]
        fps = entry["throughput_fps"]
        cells = (
            f"{precision:<9}",
            f"{_ref_name(v['reference']):<14}",
            f"{v['images']:>6}",
            f"{_num(v.get('max_rel_error'), '.1e'):>11}",
            f"{_num(v.get('pearson'), '.5f'):>8}",
            f"{_num(v.get('abs_rel'), '.4f'):>8}",
            f"{_num(v.get('delta1'), '.4f'):>7}",
            f"{_num(fps, '.1f'):>7}",
        )
        lines.append(" ".join(cells))
        if "note" in v:
            notes.append(f"{precision}: {v['note']}")
    lines.extend(notes)
    return "\n".join(lines)


def _ref_name(reference: str | None) -> str:
    return {"pytorch": "PyTorch", "fp32": "FP32 IR"}.get(reference or "", "-")


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
