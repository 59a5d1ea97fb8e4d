"""Why a configuration cannot be used: ConfigError, whose lines read ``<file>:<line>: <key.path>: <message>``,
and the translation of pydantic's validation errors into such lines, with "did you mean" for unknown keys.

Messages never print the value that failed: it may be a password. Every error is one line, whatever the file
holds: characters that are not printable (a newline in a key, a NUL in the file's name) are escaped, and a
file with a flood of problems reports the first ``MAX_ERRORS`` and how many more there are.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge_depth.config.base import annotation_members
from edge_depth.config.schema import Config
from edge_depth.redact import escape

if TYPE_CHECKING:
    from pathlib import Path

    from edge_depth.config.document import Document, Loc


MAX_ERRORS = 20
_SHOWN_KEY_CHARS = 60
_PREFIX_HINT_CHARS = 3  # a typed prefix this long or longer is worth completing: fps -> fps_limit
_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(Exception):
    """The configuration cannot be used. `errors`: one line each, `<file>:<line>: <key.path>: <message>`."""

    def __init__(self, errors: list[str]) -> None:
        lines = [escape(error) for error in errors]
        if len(lines) > MAX_ERRORS:
            # The summary takes the place (`<file>:<line>`) of the first problem it stands for.
            where = lines[MAX_ERRORS - 1].split(": ", 1)[0]
            lines[MAX_ERRORS - 1 :] = [f"{where}: ... and {len(lines) - MAX_ERRORS + 1} more problems"]
        super().__init__("\n".join(lines))
        self.errors = lines

    def __str__(self) -> str:
        return "\n".join(self.errors)


def error_line(path: Path, line: int, loc: Loc, message: str) -> str:
    """The one format of an error: `<file>:<line>: <key.path>: <message>` (no key path for the whole file)."""
    where = f"{dotted(loc)}: " if loc else ""
    return f"{path}:{line}: {where}{message}"


def dotted(loc: Loc) -> str:
    """A key path as the user reads it: `cameras[0].heatmap.rate_hz`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _KEY.fullmatch(part):  # a key no schema has: quoted, so that the path stays readable
            text += f"[{part[:_SHOWN_KEY_CHARS]!r}{'...' if len(part) > _SHOWN_KEY_CHARS else ''}]"
        else:
            text += f".{part}" if text else part
    return text


def validation_errors(doc: Document, error: ValidationError) -> list[str]:
    """One line per problem, sorted by line; union members' messages about one key are merged."""
    by_loc: dict[Loc, list[ErrorDetails]] = {}
    for details in error.errors(include_url=False):
        by_loc.setdefault(_located(doc, details), []).append(details)
    ordered = sorted(by_loc, key=doc.line)
    # Messages (with their "did you mean") only for the lines ConfigError shows; the rest are only counted.
    lines = [doc.error(loc, _join(_messages(loc, by_loc[loc]))) for loc in ordered[:MAX_ERRORS]]
    return lines + [doc.error(loc, "") for loc in ordered[MAX_ERRORS:]]


def _messages(loc: Loc, problems: list[ErrorDetails]) -> list[str]:
    # Inputs are only looked at, never printed: they may be passwords.
    messages: list[str] = []
    for details in problems:
        message = _message(loc, details)
        if message not in messages:
            messages.append(message)
    return messages


def _located(doc: Document, details: ErrorDetails) -> Loc:
    """The key path the error is about: in the data, then down to the sub-key a validator named."""
    loc = _data_loc(doc, details["loc"], details["type"] == "missing")
    key = (details.get("ctx") or {}).get("key")
    if key is not None:
        loc = (*loc, *(key if isinstance(key, tuple) else (key,)))
    return loc


def _message(loc: Loc, details: ErrorDetails) -> str:
    kind, message = details["type"], details["msg"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind == "model_type":  # pydantic names the class; the user wrote a section
        found = "nothing" if details["input"] is None else type(details["input"]).__name__
        return f"should be a section of `key: value` lines, found {found}"
    if kind == "string_type" and isinstance(details["input"], bool):
        message += " (put it in quotes: YAML reads yes/no/on/off as true/false)"
    return message


def _data_loc(doc: Document, loc: tuple[int | str, ...], missing: bool) -> Loc:
    """The part of pydantic's `loc` that is a path in the data: drops the member tags that unions add
    ('str', 'int', a model's name), keeps a missing key."""
    path: list[str | int] = []
    for index, part in enumerate(loc):
        if doc.has((*path, part)) or (missing and index == len(loc) - 1):
            path.append(part)
    return tuple(path)


def _unknown_key(loc: Loc) -> str:
    valid = sorted(_keys_at(loc[:-1]))
    key = str(loc[-1])
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    close = close or [name for name in valid if len(key) >= _PREFIX_HINT_CHARS and name.startswith(key)][:1]
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (valid keys: {', '.join(valid)})" if valid else "unknown key"


def _keys_at(loc: Loc) -> set[str]:
    """Field names of the model(s) found at `loc`, walking the schema from Config."""
    types_here: list[Any] = [Config]
    for part in loc:
        types_here = [child for annotation in types_here for child in _children(annotation, part)]
    return {name for annotation in types_here for model in _models(annotation) for name in model.model_fields}


def _children(annotation: Any, part: str | int) -> list[Any]:
    """The annotations found one step below `annotation` at key or index `part`."""
    following: list[Any] = []
    for member in annotation_members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
            field = member.model_fields.get(part)
            following += [field.annotation] if field else []
        elif get_origin(member) in (list, tuple) and isinstance(part, int):
            following += list(get_args(member)[:1])
        elif get_origin(member) is dict:
            following += list(get_args(member)[1:2])
    return following


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [m for m in annotation_members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]


def _join(messages: list[str]) -> str:
    # A union's members each say "Input should be a valid X": one sentence reads better.
    if len(messages) > 1 and all(m.startswith("Input should be ") for m in messages):
        return "Input should be " + " or ".join(m.removeprefix("Input should be ") for m in messages)
    return "; ".join(messages)
