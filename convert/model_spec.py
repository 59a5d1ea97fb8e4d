"""``--model-spec FILE``: the preprocessing facts of a model other than MiDaS v2.1 small, from YAML or JSON.

The file is a mapping of ``ModelSpec`` fields, for example::

    name: tiny_depth
    long_side: 518
    multiple: 14
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    resize_filter: bicubic   # optional, default bicubic
    color: RGB               # optional, default RGB
    stem: tiny_depth         # optional, default the name: IRs are <stem>_<precision>.xml

Unknown fields, missing ones and values of the wrong type are errors naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from convert import ConvertError
from edge_depth.model.contract import ModelSpec, SpecError, spec_from_mapping


def load_model_spec(path: Path) -> ModelSpec:
    """The spec in ``path``; ``ConvertError`` (one line naming the file, and the field if one is wrong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConvertError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConvertError(f"{path}: not valid YAML or JSON{where} ({problem})") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{path}: expected a mapping of model spec fields (name, long_side, multiple, mean, std)")
    try:
        return spec_from_mapping({str(key): value for key, value in data.items()})
    except SpecError as exc:
        raise ConvertError(f"{path}: {exc}") from None
