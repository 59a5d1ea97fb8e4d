"""The configuration file as written: its YAML data and where every key is, so errors can name the line.

``read_document`` is a safe YAML load that also records the position of each mapping key and list item,
rejects keys given twice, and turns every read, encoding or YAML problem into a ConfigError with a line.

The file may come from anywhere (a mistake, a bad copy, a hostile edit), so what is read is bounded before it
is trusted: a regular file only (a FIFO, a device or a directory would block or never end), at most
``MAX_FILE_BYTES``, at most ``MAX_NODES`` values once aliases are expanded (an alias bomb), nesting at most
``MAX_DEPTH`` levels, and no alias that contains itself. Each limit is a ConfigError naming the key and line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_depth.config.errors import ConfigError, error_line

Loc = tuple[str | int, ...]
"""A key path in the file: ``("cameras", 0, "source")``."""

# A real configuration is a few kilobytes, a few hundred values and about ten levels deep (a zone's polygon
# point in a camera's alerts). The limits leave ample room (twenty times the commented example; dozens of
# cameras with their zones drawn) and keep the pure-Python parser's worst case near a second.
MAX_FILE_BYTES = 128 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 32


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
    except _LocatedError as error:
        mark = error.problem_mark
        raise ConfigError([error_line(path, mark.line + 1 if mark else 1, error.loc, error.reason)]) from None
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_yaml_error(path, error)]) from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise ConfigError([f"{path}:{line}: YAML error: control character U+{code:04X} is not allowed"]) from None
    _check_top_level(path, data)
    return Document(path, data, positions)


def _read_text(path: Path) -> str:
    raw = _read_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {error.start})"]) from None


_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class UnreadableFileError(Exception):
    """A file that ``read_regular_file`` refused or could not read; ``str()`` is the one-line reason.

    ``missing``: there is no such file. ``too_large``: it is over the limit.
    """

    def __init__(self, reason: str, *, missing: bool = False, too_large: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing
        self.too_large = too_large


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; UnreadableFileError otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once (a plain open would wait forever), and
        # fstat on the open descriptor says what was opened, with no race against a swapped path.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as error:
        raise UnreadableFileError(error.strerror or str(error), missing=True) from None
    except OSError as error:
        raise UnreadableFileError(error.strerror or str(error)) from None
    except ValueError:  # a NUL in the path
        raise UnreadableFileError("the path contains a NUL character") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise UnreadableFileError(f"it is {kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        # Read to one byte past the limit rather than trusting st_size: the file may grow while being read.
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise UnreadableFileError(error.strerror or str(error)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise UnreadableFileError(f"larger than {limit} bytes", too_large=True)
    return b"".join(chunks)


def _read_bytes(path: Path) -> bytes:
    """The configuration file's bytes, refused unless it is a regular file of at most MAX_FILE_BYTES."""
    try:
        return read_regular_file(path, MAX_FILE_BYTES)
    except UnreadableFileError as error:
        if error.too_large:
            raise ConfigError(
                [f"{path}: the file is larger than {MAX_FILE_BYTES} bytes: not a configuration file"]
            ) from None
        raise ConfigError([f"{path}: cannot read the file: {error}"]) from None


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


class _LocatedError(yaml.MarkedYAMLError):
    """A YAML problem that is about one key: `reason` about the key at `loc`, written at `mark`."""

    def __init__(self, loc: Loc, reason: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=reason, problem_mark=mark)
        self.loc = loc
        self.reason = reason


_KINDS = {"int": "an integer", "float": "a number", "timestamp": "a date", "bool": "true or false", "binary": "base64"}


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records the (line, column) of every mapping key and sequence item.

    Keys are kept as the text written (`on:` stays "on", not True), and a key given twice in one mapping is
    an error: PyYAML would silently keep the last one, hiding a mistake. Nesting and the number of values are
    bounded while composing, aliases once the whole graph is known (see ``_check_graph``).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str | int] = []
        self._depth = 0  # not len(_path): a complex key (`? [...]`) nests without adding to the key path
        self._nodes = 0
        self._locs: dict[int, Loc] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # `index` is the key node of a mapping value, the position of a sequence item, None for a key itself.
        part = index.value if isinstance(index, yaml.ScalarNode) else index if isinstance(index, int) else None
        if part is not None:
            self._path.append(part)
        self._depth += 1
        try:
            if not self.check_event(yaml.AliasEvent):
                self._nodes += 1
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call] # untyped in PyYAML's stubs
                if self._depth > MAX_DEPTH:
                    raise _LocatedError(tuple(self._path), f"nested more than {MAX_DEPTH} levels deep", mark)
                if self._nodes > MAX_NODES:
                    raise _LocatedError(tuple(self._path), f"the file has more than {MAX_NODES} values", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if part is not None:
                self._path.pop()

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            # Deep: collections are built here, not by generators run later, so a failure is caught with its node.
            # Recursive structures, which need the generators, were refused by _check_graph.
            return super().construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as error:  # PyYAML's own converters: int('1' * 5000), date(2001, 13, 45), ...
            # The value itself is not printed: it may be a password.
            kind = _KINDS.get(node.tag.rsplit(":", 1)[-1], node.tag)
            reason = f"cannot read the value as {kind} ({type(error).__name__}); put it in quotes if it is text"
            raise _LocatedError(self._locs.get(id(node), ()), reason, node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):  # a tag such as !!set or !!omap on a scalar
            raise yaml.constructor.ConstructorError(None, None, f"expected a mapping for {node.tag}", node.start_mark)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain name", key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_shown_key(key_node.value)}", key_node.start_mark
                )
            seen.add(key_node.value)
        self.flatten_mapping(node)  # resolves `<<: *anchor` merges into node.value
        for key_node, _ in node.value:  # merged mappings' keys were not looked at above
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain name", key_node.start_mark)
        return {key.value: self.construct_object(value, deep=deep) for key, value in node.value}

    def load_with_positions(self) -> tuple[Any, dict[Loc, tuple[int, int]]]:
        """The single document (None when empty) and the 1-based (line, column) of each key and item."""
        node = self.get_single_node()
        if node is None:
            return None, {}
        self._locs = _check_graph(node)
        data = self.construct_document(node)
        positions: dict[Loc, tuple[int, int]] = {}
        _record_positions(node, (), positions)
        return data, positions


_SHOWN_KEY_CHARS = 60


def _shown_key(key: str) -> str:
    """A key for an error line: quoted, control characters escaped, shortened to _SHOWN_KEY_CHARS."""
    return repr(key) if len(key) <= _SHOWN_KEY_CHARS else repr(key[: _SHOWN_KEY_CHARS - 3]) + "..."


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    """(key or index, child) of a collection node; merge keys' values included, since they are expanded too."""
    if isinstance(node, yaml.MappingNode):
        return [(key.value if isinstance(key, yaml.ScalarNode) else "?", value) for key, value in node.value]
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return []


def _check_graph(root: yaml.Node) -> dict[int, Loc]:
    """Bound what the aliases make of the file: no node inside itself, at most MAX_NODES values and MAX_DEPTH
    levels once expanded. Returns the key path of each node (by id), where it is written rather than aliased.

    PyYAML shares the object of an anchored node between its aliases, so a nine-by-nine "billion laughs" costs
    it nothing; every later walk (substitution, validation) expands it. Sizes are counted per node, each node
    once, without recursion (a chain of aliases is deeper than Python's stack).
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    locs: dict[int, Loc] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, Loc, bool]] = [(root, (), False)]
    while stack:
        node, loc, leaving = stack.pop()
        key = id(node)
        children = _children(node)
        if leaving:
            entered.discard(key)
            size[key] = 1 + sum(size[id(child)] for _, child in children)
            height[key] = 1 + max((height[id(child)] for _, child in children), default=0)
            if size[key] > MAX_NODES:
                raise _LocatedError(
                    loc, f"aliases expand this to more than {MAX_NODES} values (an alias bomb?)", node.start_mark
                )
            if height[key] + len(loc) > MAX_DEPTH:
                raise _LocatedError(loc, f"aliases nest this more than {MAX_DEPTH} levels deep", node.start_mark)
            continue
        if key in size:
            continue
        if key in entered:  # still being counted, so it is one of this node's own ancestors
            raise _LocatedError(
                loc, "an alias refers to a node that contains it (a recursive structure)", node.start_mark
            )
        entered.add(key)
        locs[key] = loc
        stack.append((node, loc, True))
        # Reversed, so that children are visited in the order written: an anchor comes before its aliases, so
        # each node is first reached, and named, where it is written.
        stack.extend((child, (*loc, part), False) for part, child in reversed(children) if id(child) not in size)
    return locs


def _record_positions(node: yaml.Node, loc: Loc, out: dict[Loc, tuple[int, int]]) -> None:
    # _check_graph has bounded the depth and the expanded size, and ruled out cycles.
    if isinstance(node, yaml.MappingNode):
        # Merged pairs come first in node.value, so keys written in this mapping win, as in the data.
        children = [((key.value,), key, value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [((index,), item, item) for index, item in enumerate(node.value)]
    else:
        children = []
    for part, mark_node, child in children:
        out[loc + part] = (mark_node.start_mark.line + 1, mark_node.start_mark.column + 1)
        _record_positions(child, loc + part, out)
