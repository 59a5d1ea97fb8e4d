"""The base of every configuration model (strict: unknown keys are errors; immutable) and what the
generic walks over the models (path checks, error hints, the ``--schema`` table) need to read them."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=False)


MUST_EXIST: dict[str, Any] = {"must_exist": True}
"""``json_schema_extra`` of a Path field whose file must exist when the configuration is loaded."""


def must_exist(field: FieldInfo) -> bool:
    """Whether ``field`` carries the MUST_EXIST mark."""
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("must_exist"))


def annotation_members(annotation: Any) -> list[Any]:
    """The types of a union (None dropped), or [annotation]; ``Annotated`` is looked through."""
    if get_origin(annotation) is Annotated:
        return annotation_members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) if arg is not type(None) for m in annotation_members(arg)]
    return [annotation]
