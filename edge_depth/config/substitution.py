"""``${NAME}``, ``${NAME:-default}``, ``${credential:NAME}`` and ``$$`` in the configuration's string values.

Credentials are files in ``$CREDENTIALS_DIRECTORY`` (systemd's LoadCredential=), so secrets stay out of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_depth.config.document import Document, Loc, UnreadableFileError, read_regular_file
from edge_depth.config.errors import ConfigError

_REFERENCE = re.compile(r"\$(\$|\{(?P<body>[^}]*)\}|\{)")
_ENV_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_CREDENTIAL_NAME = re.compile(r"credential:(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)")
# A password or a token: far below this. The bound keeps a mistaken path (a FIFO, a device, a log) from hanging
# or filling the start-up.
MAX_CREDENTIAL_BYTES = 64 * 1024


class _SubstitutionError(Exception):
    pass


def substitute(doc: Document, env: Mapping[str, str]) -> Document:
    """`doc` with ${NAME}, ${NAME:-default}, ${credential:NAME} and $$ replaced in every string value.

    A value that is only a reference stays a string: pydantic then coerces it as if it had been written
    (port: ${MQTT_PORT} validates as an int).
    """
    errors: list[str] = []

    def walk(value: Any, loc: Loc) -> Any:
        if isinstance(value, dict):
            return {key: walk(item, (*loc, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*loc, index)) for index, item in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            try:
                return _REFERENCE.sub(lambda match: _expand(match, env), value)
            except _SubstitutionError as error:
                errors.append(doc.error(loc, str(error)))
        return value

    data = walk(doc.data, ())
    if errors:
        raise ConfigError(errors)
    return replace(doc, data=data)


def _expand(match: re.Match[str], env: Mapping[str, str]) -> str:
    # Messages name the reference, never the text around it: that text may be part of a password.
    if match[1] == "$":
        return "$"
    body = match["body"]
    if body is None:
        raise _SubstitutionError("'${' is not closed by '}' (write $$ for a literal $)")
    if credential := _CREDENTIAL_NAME.fullmatch(body):
        return _read_credential(credential["name"], env)
    reference = _ENV_NAME.fullmatch(body)
    if reference is None:
        raise _SubstitutionError(
            "invalid reference: use ${NAME}, ${NAME:-default} or ${credential:NAME} (write $$ for a literal $)"
        )
    value = env.get(reference["name"])
    if reference["default"] is not None and not value:
        return reference["default"]
    if value is None:
        raise _SubstitutionError(f"environment variable {reference['name']} is not set")
    return value


def _read_credential(name: str, env: Mapping[str, str]) -> str:
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise _SubstitutionError(
            f"credential '{name}' needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=), which is not set"
        )
    path = Path(directory) / name
    try:
        raw = read_regular_file(path, MAX_CREDENTIAL_BYTES)
    except UnreadableFileError as error:
        if error.missing:
            raise _SubstitutionError(
                f"credential '{name}' not found: no file '{name}' in $CREDENTIALS_DIRECTORY"
            ) from None
        raise _SubstitutionError(f"cannot read credential '{name}': {error}") from None
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise _SubstitutionError(f"cannot read credential '{name}': not UTF-8 text") from None
