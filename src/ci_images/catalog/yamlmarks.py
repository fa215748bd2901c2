"""Load YAML into plain data while remembering where every value came from (line and column), within bounds.

PyYAML's composer gives every node a start mark; we keep them keyed by the value's path so later validation
(jsonschema, semantic checks) can point at ``images.yaml:12:7`` rather than say "somewhere in the catalog".

A catalog is small, and a hostile or broken one must fail fast and say where: the text is at most MAX_BYTES, nests at
most MAX_DEPTH deep (checked on the token stream before anything recursive runs), and expands to at most MAX_NODES
values once aliases are followed (a "billion laughs" file stops at the limit, within milliseconds). Every YAML error,
unknown tag, unreadable scalar, recursive alias, undecodable byte or control character becomes a CatalogError with
file:line:column. Duplicate mapping keys, which YAML silently collapses, are reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ci_images.errors import CatalogError

Path_ = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_BYTES = 1 << 20  # 1 MiB; the shipped catalog is about 2 KiB
MAX_DEPTH = 32  # nesting of mappings and sequences; a catalog needs 6
MAX_NODES = 100_000  # values after following aliases; the shipped catalog has about 100
_OPENERS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSERS = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_SCALAR_FIX = "quote the value if it is text, or write it as YAML writes that type"


@dataclass
class Marked:
    """Plain data plus a path -> (line, column) index (both 1-based)."""

    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    raw: dict[Path_, str] = field(
        default_factory=dict
    )  # scalar text as written, for messages about 1.10 -> 1.1

    def where(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """Best known position for ``path``: the exact node, else its nearest ancestor."""
        p = tuple(path)
        table = self.key_marks if key and p in self.key_marks else self.marks
        while p not in table and p:
            p = p[:-1]
            table = self.marks
        mark = table.get(p)
        return (mark[0], mark[1]) if mark else (None, None)


def _position(node: yaml.Node | yaml.Token) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _error(filename: str, at: tuple[int, int] | None, message: str, fix: str) -> CatalogError:
    line, column = at if at else (None, None)
    return CatalogError(message, path=filename, line=line, column=column, fix=fix)


def line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index`` in ``text``."""
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def decode(data: bytes, filename: str) -> str:
    """UTF-8 text of a catalog file; an undecodable byte is reported at its line and column."""
    if len(data) > MAX_BYTES:
        raise _error(
            filename,
            None,
            f"the catalog is {len(data)} bytes; the limit is {MAX_BYTES} bytes",
            "a catalog lists images and versions: check that this is the right file",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        raise _error(
            filename,
            line_column(good, len(good)),
            f"byte 0x{data[exc.start]:02x} is not UTF-8",
            "save the file as UTF-8",
        ) from exc


def _check_tokens(text: str, filename: str) -> None:
    """Syntax and nesting depth, from the token stream (iterative, so no input can exhaust the stack)."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPENERS):
            depth += 1
            if depth > MAX_DEPTH:
                raise _error(
                    filename,
                    _position(token),
                    f"nested more than {MAX_DEPTH} levels deep",
                    "a catalog nests a few levels (images > name > variants > ...): check brackets and indentation",
                )
        elif isinstance(token, _CLOSERS):
            depth -= 1


def _syntax_error(exc: yaml.YAMLError, text: str, filename: str) -> CatalogError:
    if isinstance(exc, yaml.reader.ReaderError):
        # A control character (NUL, ...) the YAML reader refuses: it knows the index, we say line and column.
        shown = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return _error(
            filename,
            line_column(text, exc.position),
            f"control character {shown} is not allowed in YAML",
            "remove it (a catalog is plain text)",
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
            # e.g. an unclosed quote is only noticed at the end of the file: say where it was opened.
            start = exc.context_mark
            problem += f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})"
        return _error(
            filename,
            (mark.line + 1, mark.column + 1) if mark else None,
            f"YAML syntax error: {problem}",
            "check indentation and quoting at that position (a YAML linter such as yamllint helps)",
        )
    return _error(filename, None, f"YAML error: {exc}", "fix the YAML syntax")


def load_marked(text: str, filename: str) -> Marked:
    try:
        _check_tokens(text, filename)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, filename) from exc
    marked = Marked(data=None)
    if root is None:
        return marked
    converter = _Converter(marked, filename)
    marked.data = converter.convert(root, ())
    return marked


class _Converter:
    """Nodes to plain data, with positions; counts every value it produces and refuses cycles."""

    def __init__(self, marked: Marked, filename: str) -> None:
        self.marked = marked
        self.filename = filename
        self.constructor = yaml.SafeLoader("")
        self.produced = 0
        self.open: set[int] = set()  # nodes being converted right now: meeting one again is a recursive alias
        self.own_keys_by_node: dict[int, set[int]] = {}

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        self.produced += 1
        if self.produced > MAX_NODES:
            raise _error(
                self.filename,
                _position(node),
                f"the catalog expands to more than {MAX_NODES} values (aliases repeat what they point at)",
                "use fewer aliases (&name / *name): a catalog lists each image and version once",
            )
        if id(node) in self.open:
            raise _error(
                self.filename,
                _position(node),
                "an alias refers to a value that contains it",
                "remove the recursive alias",
            )
        self.marked.marks[path] = _position(node)
        if isinstance(node, yaml.MappingNode):
            self.open.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self.open.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self.open.add(id(node))
            try:
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        self.marked.raw[path] = str(node.value)
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _error(
                self.filename,
                _position(node),
                f"{exc.problem or exc}",
                "remove the tag (like !name) or quote the value",
            ) from exc
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            # e.g. `!!int ten`, `!!timestamp x`, or an integer of thousands of digits
            raise _error(
                self.filename,
                _position(node),
                f"cannot read {str(node.value)[:40]!r} as {node.tag.rsplit(':', 1)[-1]}: {str(exc)[:120]}",
                _SCALAR_FIX,
            ) from exc
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        # Keys written in this mapping; flatten_mapping puts merged (<<) keys before them, and a written key
        # overriding a merged one is what merge keys are for, not a duplicate. flatten_mapping changes the node in
        # place, so remember its own keys from the first visit (an aliased mapping is visited again).
        own_keys = self.own_keys_by_node.setdefault(
            id(node), {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
        )
        try:
            self.constructor.flatten_mapping(node)  # merge keys (<<) like SafeLoader does
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise _error(
                self.filename,
                (mark.line + 1, mark.column + 1) if mark else _position(node),
                f"{exc.problem or exc}",
                "merge (<<) only mappings",
            ) from exc
        explicit: set[str] = set()
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _error(
                    self.filename,
                    _position(key_node),
                    "a mapping key must be a plain string",
                    "write the key as text",
                )
            key = self._scalar(key_node)
            if not isinstance(key, str):
                raise _error(
                    self.filename,
                    _position(key_node),
                    f"mapping key {key!r} is a {type(key).__name__}, not a string",
                    f'quote the key: "{key}":',
                )
            if key in explicit and id(key_node) in own_keys:
                first_line, _ = self.marked.key_marks[(*path, key)]
                raise _error(
                    self.filename,
                    _position(key_node),
                    f"duplicate key {key!r} (first defined on line {first_line})",
                    "remove or merge one of the two entries",
                )
            if id(key_node) in own_keys:
                explicit.add(key)
            self.marked.key_marks[(*path, key)] = _position(key_node)
            result[key] = self.convert(value_node, (*path, key))
        return result
