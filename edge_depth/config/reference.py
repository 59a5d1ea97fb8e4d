"""The ``--schema`` reference: every key of the configuration file as a Markdown table, read from the models,
so the documentation cannot drift from what is validated."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from edge_depth.config.base import annotation_members
from edge_depth.config.schema import Config


def schema_reference() -> str:
    """Every key of the file as a Markdown table (key, type, default, bounds, description), from the models."""
    rows = ["| Key | Type | Default | Bounds | Description |", "|---|---|---|---|---|"]
    for key, field in _schema_rows(Config, ""):
        cells = (f"`{key}`", _type_name(field.annotation), _default(field), _bounds(field), field.description or "")
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _schema_rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        key = prefix + name
        yield key, field
        for member in annotation_members(field.annotation):
            item_key, item = key, member
            if get_origin(member) in (list, tuple):
                item_key, item = key + "[]", get_args(member)[0]
            elif get_origin(member) is dict:
                item_key, item = key + ".<name>", get_args(member)[1]
            if isinstance(item, type) and issubclass(item, BaseModel):
                yield from _schema_rows(item, item_key + ".")


def _type_name(annotation: Any) -> str:
    names = []
    for member in annotation_members(annotation):
        origin = get_origin(member)
        if origin is Literal:
            names.append(" / ".join(f"`{value}`" for value in get_args(member)))
        elif origin in (list, tuple):
            names.append(f"list of {_type_name(get_args(member)[0])}")
        elif origin is dict:
            names.append(f"mapping of {_type_name(get_args(member)[1])}")
        elif isinstance(member, type) and issubclass(member, BaseModel):
            names.append("section")
        else:
            names.append(_SCALAR_NAMES.get(member, getattr(member, "__name__", str(member))))
    return " or ".join(names)


_SCALAR_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
}


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is list:
        return "`[]`"
    if field.default_factory is not None:
        return ""
    if field.default is None:
        return "unset"
    value = field.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _bounds(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            parts.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"length >= {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"length <= {item.max_length}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    # `<prefix>` would vanish as an HTML tag in rendered Markdown; `|` would end the cell.
    return _TAG_START.sub(r"\\<", text.replace("|", "\\|"))


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
