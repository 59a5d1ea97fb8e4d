"""Loading the configuration file: read the YAML, substitute ``${...}``, validate against the schema,
resolve relative paths and check the files it names; every problem becomes a ConfigError line.

Whatever the file holds, loading ends in a Config or a ConfigError (never a traceback, never a wait): the
document's size and shape are bounded by ``read_document``, and no string value, written or substituted, may
hold a NUL or a lone surrogate, which no host, topic or path can carry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_depth.config.document import Document, read_document
from edge_depth.config.errors import ConfigError, validation_errors
from edge_depth.config.paths import missing_files, resolve_paths
from edge_depth.config.schema import Config
from edge_depth.config.substitution import substitute

Loc = tuple[str | int, ...]
# A check that needs more than the schema (OpenVINO's devices, a writable cache): (key, problem) pairs.
Check = Callable[[Config], list[tuple[Loc, str]]]

_UNUSABLE = re.compile(r"[\x00\ud800-\udfff]")


def load_config(path: Path, *, env: Mapping[str, str] | None = None, checks: Sequence[Check] = ()) -> Config:
    """Read, substitute, validate and check the YAML file at `path`; raise ConfigError with every problem.

    `env` (default os.environ) provides ${NAME} values and CREDENTIALS_DIRECTORY for ${credential:NAME}.
    Relative paths of the result are already resolved against the file's directory (see resolve_paths),
    and every file the daemon will open (IR, TLS files, file and recording cameras that are enabled) exists.
    `checks` run last, on a config that passed everything else; their problems are reported at their keys.
    """
    config, _ = _load(path, os.environ if env is None else env, checks)
    return config


def check_config(path: Path, *, checks: Sequence[Check] = ()) -> tuple[int, str]:
    """`edge-depth check-config FILE`: (0, a one-line summary) or (2, the error lines)."""
    try:
        config, doc = _load(path, os.environ, checks)
    except ConfigError as error:
        return 2, str(error)
    return 0, _summary(config, doc)


def _load(path: Path, env: Mapping[str, str], checks: Sequence[Check] = ()) -> tuple[Config, Document]:
    doc = substitute(read_document(path), env)
    unusable = [
        doc.error(loc, _unusable_reason(text)) for loc, text in _strings(doc.data, ()) if _UNUSABLE.search(text)
    ]
    if unusable:
        raise ConfigError(unusable)
    try:
        config = Config.model_validate(doc.data)
    except ValidationError as error:
        raise ConfigError(validation_errors(doc, error)) from None
    config = resolve_paths(config, Path(os.path.abspath(path)).parent)
    problems = missing_files(config, doc)
    for check in checks if not problems else ():
        problems += [doc.error(loc, message) for loc, message in check(config)]
    if problems:
        raise ConfigError(problems)
    return config, doc


def _strings(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every key and string value in the data with its key path (the depth is bounded by read_document)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*loc, key), key
            yield from _strings(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*loc, index))
    elif isinstance(value, str):
        yield loc, value


def _unusable_reason(text: str) -> str:
    # Only what is wrong, never the value: it may be a password.
    if "\x00" in text:
        return "must not contain a NUL character"
    return "must be valid Unicode text (it holds a lone surrogate, an escape such as \\udc80)"


def _summary(config: Config, doc: Document) -> str:
    cameras = [f"{c.name}" if c.enabled else f"{c.name} [disabled]" for c in config.cameras]
    count = f"{len(cameras)} camera{'s' if len(cameras) != 1 else ''}"
    model = doc.value(("model", "path")) or config.model.path
    tls = " with TLS" if config.mqtt.tls else ""
    return (
        f"{doc.path}: ok: {count} ({', '.join(cameras)}), model {model} on {config.model.device}, "
        f"broker {config.mqtt.host}:{config.mqtt.port}{tls}"
    )
