"""The files a configuration names: relative paths resolved against the config file's directory, and
the files the daemon will open checked before it starts (a missing model is a clear error, not a crash).

Covers every ``Path`` field (those marked MUST_EXIST must exist) and a camera ``source`` that names a
file: a video file or a depth recording, both relative to the config file like any other path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edge_depth.config.base import must_exist
from edge_depth.config.document import Document, Loc
from edge_depth.config.schema import CameraConfig, Config
from edge_depth.config.sources import SourceKind

M = TypeVar("M", bound=BaseModel)

_FILE_SOURCES: frozenset[SourceKind] = frozenset({"file", "recording"})
"""Source kinds that are paths on this machine (devices and streams are not resolved or checked)."""


def resolve_paths(config: M, base_dir: Path) -> M:
    """A copy of `config` (any model of this schema) whose relative paths are joined to `base_dir`.

    Covers every Path field, nested models and lists included, and a file or recording camera's `source`.
    """
    resolved = _resolve(config, base_dir)
    assert isinstance(resolved, type(config))
    return resolved


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return value if value.is_absolute() else Path(os.path.normpath(base / value))
    if isinstance(value, list | tuple):
        return type(value)(_resolve(item, base) for item in value)
    if isinstance(value, dict):
        return {key: _resolve(item, base) for key, item in value.items()}
    if not isinstance(value, BaseModel):
        return value
    updates = {}
    for name in type(value).model_fields:
        old = getattr(value, name)
        new = _resolve(old, base)
        if new is not old:
            updates[name] = new
    if _names_file(value) and not Path(str(value.source)).is_absolute():
        updates["source"] = os.path.normpath(base / str(value.source))
    return value.model_copy(update=updates) if updates else value


def _names_file(value: object) -> TypeGuard[CameraConfig]:
    """Whether `value` is a camera whose source is a path."""
    return isinstance(value, CameraConfig) and value.source_kind() in _FILE_SOURCES


def missing_files(config: Config, doc: Document) -> list[str]:
    """Errors for files the daemon would fail to open: must_exist fields, the IR's .bin, file and recording
    cameras that are enabled. `config`'s paths are already resolved; `doc` says how they were written."""
    errors: list[str] = []
    for loc, field, value in _fields(config, ()):
        if isinstance(value, Path) and must_exist(field):
            errors += _missing_path(doc, loc, value)
    for index, camera in enumerate(config.cameras):
        if camera.enabled and _names_file(camera):
            errors += _missing_source(doc, ("cameras", index, "source"), Path(str(camera.source)))
    return errors


def _fields(value: Any, loc: Loc) -> Iterator[tuple[Loc, FieldInfo, Any]]:
    """Every (location, field, value) of a validated model tree, depth first."""
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            child = getattr(value, name)
            yield (*loc, name), field, child
            yield from _fields(child, (*loc, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _fields(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _fields(item, (*loc, key))


def _missing_path(doc: Document, loc: Loc, path: Path) -> list[str]:
    problems = _file_problem(doc, loc, path, _shown(doc.value(loc), path))
    if not problems and loc == ("model", "path") and path.suffix == ".xml":
        weights = path.with_suffix(".bin")
        problems = _file_problem(doc, loc, weights, f"{weights} (the IR's weights, beside the .xml)")
    return problems


def _missing_source(doc: Document, loc: Loc, path: Path) -> list[str]:
    shown = _shown(doc.value(loc), path)
    if "@" in shown:  # a mistyped URL (rtsp:/user:password@host): its password must not be printed
        shown = "the value is hidden: it contains '@' and may be a URL with a password (URLs need '://')"
    return _file_problem(doc, loc, path, shown)


def _shown(written: Any, resolved: Path) -> str:
    """A path as the user wrote it, with where it was looked for when that differs."""
    if isinstance(written, str) and written != str(resolved):
        return f"{written} (resolved to {resolved})"
    return str(resolved)


def _file_problem(doc: Document, loc: Loc, resolved: Path, shown: str) -> list[str]:
    return [doc.error(loc, f"{problem}: {shown}") for problem in _problem(resolved)]


def _problem(path: Path) -> list[str]:
    """[] when `path` is a readable file, else the one problem with it (without the path)."""
    if not path.exists():
        return ["file not found"]
    if not path.is_file():
        return ["not a file"]
    if not os.access(path, os.R_OK):
        return ["file not readable by this user"]
    return []
