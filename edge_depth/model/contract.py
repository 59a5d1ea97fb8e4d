"""The model contract: what an edge-depth IR is, written once for ``convert`` (which writes it) and the daemon.

An IR has ONE input ``image``, (1, H, W, 3) uint8 BGR as OpenCV decodes it, and ONE output ``depth``,
(1, H, W) float32 relative inverse depth (larger = nearer). Colour conversion and mean/std normalisation run
inside the IR, so the daemon only resizes frames, and how it resizes them is a fact of the model: the
``ModelSpec`` (longer side, size multiple, filter, normalisation), stored in the IR's runtime info under
``RT_INFO_SECTION`` and read back by the engine. IRs converted before the spec was stored read back as
``MIDAS_V21_SMALL``, which is what they are.

OpenVINO is not imported here: the functions take any object with ``ov.Model``'s rt_info methods.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

INPUT_NAME = "image"
OUTPUT_NAME = "depth"
RT_INFO_SECTION = "edge_depth"
PRECISIONS = ("fp32", "fp16", "int8")
RESIZE_FILTERS = ("bicubic", "bilinear", "area", "nearest")
COLOR_ORDERS = ("RGB", "BGR")  # the channel order the network was trained on (the IR's input is always BGR)
CHANNELS = 3  # mean and std have one value per colour channel
PIXEL_SCALE = 255.0  # u8 pixels are divided by this before mean/std, as MiDaS's transform does

# rt_info keys written by `convert` besides the spec's own (see SPEC_KEYS)
PRECISION_KEY = "precision"
INPUT_SIZE_KEY = "input_size"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SpecError(ValueError):
    """A spec value that is missing or out of range; the message starts with the field's name."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field_name = field_name


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The preprocessing facts of a depth model, as the daemon must honour them.

    ``long_side``: pixels of the longer input side the model was trained at. ``multiple``: both input
    sides must be multiples of it (the encoder's total stride). ``resize_filter``: how frames are resized
    to the input, one of ``RESIZE_FILTERS``. ``color``: channel order the network expects; ``mean`` and
    ``std`` per channel in that order, in units of pixel / ``PIXEL_SCALE``. ``stem``: IR files are
    ``<stem>_<precision>.xml``. ``long_side`` must itself be a multiple of ``multiple``, so that the
    automatic input size never exceeds it.
    """

    name: str
    stem: str
    long_side: int
    multiple: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_filter: str = "bicubic"
    color: str = "RGB"

    def __post_init__(self) -> None:
        for name in ("name", "stem"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise SpecError(name, f"{value!r} is not a name of letters, digits, '_', '.' or '-'")
        for name in ("long_side", "multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecError(name, f"{value!r} is not a whole number > 0")
        if self.long_side % self.multiple:
            raise SpecError("long_side", f"{self.long_side} is not a multiple of multiple ({self.multiple})")
        for name, low in (("mean", -math.inf), ("std", 0.0)):
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or len(value) != CHANNELS
                or not all(isinstance(v, float) and math.isfinite(v) and v > low for v in value)
            ):
                bound = "positive " if low == 0.0 else ""
                raise SpecError(name, f"{value!r} is not three finite {bound}numbers")
        if self.resize_filter not in RESIZE_FILTERS:
            raise SpecError("resize_filter", f"{self.resize_filter!r} is not one of {', '.join(RESIZE_FILTERS)}")
        if self.color not in COLOR_ORDERS:
            raise SpecError("color", f"{self.color!r} is not one of {', '.join(COLOR_ORDERS)}")

    @property
    def default_input_size(self) -> tuple[int, int]:
        """(width, height) an IR is saved at unless told otherwise: square at the training resolution."""
        return self.long_side, self.long_side

    def size_problem(self, size: tuple[int, int]) -> str | None:
        """Why ``size`` = (width, height) cannot be this model's input, or None when it can."""
        width, height = size
        if width > 0 and height > 0 and not width % self.multiple and not height % self.multiple:
            return None
        example = f"{self.long_side}x{max(self.multiple, self.long_side * 3 // 4 // self.multiple * self.multiple)}"
        return f"width and height must be positive multiples of {self.multiple} (e.g. {example})"

    def ir_name(self, precision: str) -> str:
        """The IR's file name for ``precision``: ``<stem>_<precision>.xml``."""
        return ir_file_name(self.stem, precision)


MIDAS_V21_SMALL = ModelSpec(
    name="midas_v21_small",
    stem="midas_small",
    long_side=256,  # trained at 256 on the longer side
    multiple=32,  # EfficientNet-Lite3 downsamples by 32
    mean=(0.485, 0.456, 0.406),  # ImageNet, RGB
    std=(0.229, 0.224, 0.225),
    resize_filter="bicubic",  # MiDaS's own transform resizes with cv2.INTER_CUBIC
    color="RGB",
)

# ModelSpec field -> rt_info key; "model" predates the spec and has always held the name
SPEC_KEYS: Mapping[str, str] = {
    "name": "model",
    "stem": "ir_stem",
    "long_side": "long_side",
    "multiple": "multiple",
    "mean": "mean",
    "std": "std",
    "resize_filter": "resize_filter",
    "color": "color",
}


def ir_file_name(stem: str, precision: str) -> str:
    """``<stem>_<precision>.xml``; ``precision`` is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return f"{stem}_{precision}.xml"


def spec_from_mapping(data: Mapping[str, Any]) -> ModelSpec:
    """A spec from plain values (a parsed YAML/JSON file): unknown fields are errors, ``stem`` defaults to
    ``name``, ``resize_filter`` and ``color`` to MiDaS's. Numbers must be numbers, not strings."""
    known = {f.name for f in fields(ModelSpec)}
    for key in data:
        if key not in known:
            raise SpecError(str(key), f"unknown field (known: {', '.join(sorted(known))})")
    values = dict(data)
    for required in ("name", "long_side", "multiple", "mean", "std"):
        if required not in values:
            raise SpecError(required, "missing")
    values.setdefault("stem", values["name"])
    for name in ("mean", "std"):
        value = values[name]
        if isinstance(value, list | tuple) and len(value) == CHANNELS and all(_is_number(v) for v in value):
            values[name] = tuple(float(v) for v in value)
    return ModelSpec(**values)


def spec_as_dict(spec: ModelSpec) -> dict[str, Any]:
    """The spec as plain values for JSON (tuples as lists); ``spec_from_mapping`` reads it back."""
    return {f.name: list(v) if isinstance(v := getattr(spec, f.name), tuple) else v for f in fields(spec)}


def spec_to_rt_info(spec: ModelSpec) -> dict[str, str]:
    """The spec as rt_info key -> text (floats in ``repr`` form, so they read back exactly)."""
    texts: dict[str, str] = {}
    for field_name, key in SPEC_KEYS.items():
        value = getattr(spec, field_name)
        texts[key] = ",".join(repr(v) for v in value) if isinstance(value, tuple) else str(value)
    return texts


class RtInfoModel(Protocol):
    """What the functions below need of an ``openvino.Model``."""

    def has_rt_info(self, path: list[str]) -> bool: ...

    def get_rt_info(self, path: list[str]) -> Any: ...

    def set_rt_info(self, obj: Any, path: list[str]) -> None: ...


def write_rt_info(model: RtInfoModel, values: Mapping[str, str]) -> None:
    """Store text ``values`` in the model's runtime info under ``RT_INFO_SECTION``."""
    for key, value in values.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, key])


def read_rt_info(model: RtInfoModel, key: str, default: str) -> str:
    """The text stored under ``RT_INFO_SECTION``/``key``, or ``default`` when the IR has none."""
    path = [RT_INFO_SECTION, key]
    if not model.has_rt_info(path):
        return default
    return str(model.get_rt_info(path).astype(str))


def write_spec(model: RtInfoModel, spec: ModelSpec) -> None:
    """Store ``spec`` in the model's runtime info (saved with the IR)."""
    write_rt_info(model, spec_to_rt_info(spec))


def read_spec(model: RtInfoModel) -> ModelSpec:
    """The spec stored in the model's runtime info; a key that is absent (older IRs) takes MiDaS's value.

    Raises ``SpecError`` naming the rt_info key (``edge_depth/<key>``) of a value that is not valid.
    """
    defaults = spec_to_rt_info(MIDAS_V21_SMALL)
    values: dict[str, Any] = {}
    for field_name, key in SPEC_KEYS.items():
        text = read_rt_info(model, key, defaults[key]).strip()
        where = f"{RT_INFO_SECTION}/{key}"
        try:
            if field_name in ("long_side", "multiple"):
                values[field_name] = int(text)
            elif field_name in ("mean", "std"):
                values[field_name] = tuple(float(v) for v in text.split(","))
            else:
                values[field_name] = text
        except ValueError:
            raise SpecError(where, f"{text!r} is not valid") from None
    try:
        return ModelSpec(**values)
    except SpecError as exc:
        raise SpecError(f"{RT_INFO_SECTION}/{SPEC_KEYS[exc.field_name]}", str(exc).split(": ", 1)[1]) from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
