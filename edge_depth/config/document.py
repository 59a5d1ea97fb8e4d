"""The configuration file as written: its YAML data and where every key is, so errors can name the line.

``read_document`` is a safe YAML load that also records the position of each mapping key and list item,
rejects keys given twice, and turns every read, encoding or YAML problem into a ConfigError with a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_depth.config.errors import ConfigError, error_line

Loc = tuple[str | int, ...]
"""A key path in the file: ``("cameras", 0, "source")``."""


@dataclass(frozen=True)
class Document:
    """The parsed file: data as plain dicts/lists/scalars, and the (line, column) of every key and item."""

    path: Path
    data: dict[str, Any]
    positions: dict[Loc, tuple[int, int]]

    def line(self, loc: Loc) -> int:
        """Line of `loc`, or of its nearest ancestor in the file (a missing key: its parent's line)."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.positions:
                return self.positions[loc[:end]][0]
        return 1

    def error(self, loc: Loc, message: str) -> str:
        """The error line for `message` about the key at `loc`."""
        return error_line(self.path, self.line(loc), loc, message)

    def value(self, loc: Loc) -> Any:
        """The value at `loc` as written (after substitution), None when the file does not have it."""
        node = self._find(loc)
        return None if node is _ABSENT else node

    def has(self, loc: Loc) -> bool:
        """Whether the data has a key or item at `loc` (even one whose value is null)."""
        return self._find(loc) is not _ABSENT

    def _find(self, loc: Loc) -> Any:
        node: Any = self.data
        for part in loc:
            node = _child(node, part)
            if node is _ABSENT:
                break
        return node


_ABSENT = object()


def _child(node: Any, part: str | int) -> Any:
    """node[part] for a mapping key or list index present in the data, else _ABSENT."""
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def read_document(path: Path) -> Document:
    """The YAML mapping in the file at `path`, with positions; ConfigError when it cannot be one."""
    text = _read_text(path)
    try:
        loader = _LineLoader(text)  # checks for unprintable characters already
        try:
            data, positions = loader.load_with_positions()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_yaml_error(path, error)]) from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise ConfigError([f"{path}:{line}: YAML error: control character U+{code:04X} is not allowed"]) from None
    _check_top_level(path, data)
    return Document(path, data, positions)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the file: {error.strerror or error}"]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {error.start})"]) from None


def _check_top_level(path: Path, data: Any) -> None:
    if data is None:
        raise ConfigError([f"{path}:1: the file is empty; it needs at least a `cameras:` list"])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise ConfigError(
            [f"{path}:1: the file must be a YAML mapping of sections (mqtt, model, cameras...), not {kind}"]
        )


def _yaml_error(path: Path, error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = error.problem or error.context or "invalid YAML"
    if error.context and error.problem and error.context_mark:
        problem += f" ({error.context} at line {error.context_mark.line + 1})"
    syntax = isinstance(error, yaml.scanner.ScannerError | yaml.parser.ParserError)
    return f"{path}:{line}: YAML {'syntax ' if syntax else ''}error at column {column}: {problem}"


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records the (line, column) of every mapping key and sequence item.

    Keys are kept as the text written (`on:` stays "on", not True), and a key given twice in one mapping is
    an error: PyYAML would silently keep the last one, hiding a mistake.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain name", key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                )
            seen.add(key_node.value)
        self.flatten_mapping(node)  # resolves `<<: *anchor` merges into node.value
        return {key.value: self.construct_object(value, deep=deep) for key, value in node.value}

    def load_with_positions(self) -> tuple[Any, dict[Loc, tuple[int, int]]]:
        """The single document (None when empty) and the 1-based (line, column) of each key and item."""
        node = self.get_single_node()
        if node is None:
            return None, {}
        data = self.construct_document(node)
        positions: dict[Loc, tuple[int, int]] = {}
        _record_positions(node, (), positions, set())
        return data, positions


def _record_positions(node: yaml.Node, loc: Loc, out: dict[Loc, tuple[int, int]], active: set[int]) -> None:
    if id(node) in active:  # an alias to an enclosing node: the structure is recursive
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        # Merged pairs come first in node.value, so keys written in this mapping win, as in the data.
        children = [((key.value,), key, value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [((index,), item, item) for index, item in enumerate(node.value)]
    else:
        children = []
    for part, mark_node, child in children:
        out[loc + part] = (mark_node.start_mark.line + 1, mark_node.start_mark.column + 1)
        _record_positions(child, loc + part, out, active)
    active.discard(id(node))
