"""Load YAML into plain data while remembering where every value came from (line and column).

PyYAML's composer gives every node a start mark; we keep them keyed by the value's path so later validation
(jsonschema, semantic checks) can point at ``images.yaml:12:7`` rather than say "somewhere in the catalog".
Duplicate mapping keys, which YAML silently collapses, are reported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ci_images.errors import CatalogError

Path_ = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_marked(text: str, filename: str) -> Marked:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
            # e.g. an unclosed quote is only noticed at the end of the file: say where it was opened.
            start = exc.context_mark
            problem += f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})"
        raise CatalogError(
            f"YAML syntax error: {problem}",
            path=filename,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            fix="check indentation and quoting at that position (a YAML linter such as yamllint helps)",
        ) from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"YAML error: {exc}", path=filename, fix="fix the YAML syntax") from exc
    marked = Marked(data=None)
    if root is None:
        marked.data = None
        return marked
    constructor = yaml.SafeLoader("")
    marked.data = _convert(root, (), marked, constructor, filename, {})
    return marked


def _convert(
    node: yaml.Node,
    path: Path_,
    marked: Marked,
    constructor: yaml.SafeLoader,
    filename: str,
    own_keys_by_node: dict[int, set[int]],
) -> Any:
    marked.marks[path] = _position(node)
    if isinstance(node, yaml.MappingNode):
        # Keys written in this mapping; flatten_mapping puts merged (<<) keys before them, and a written key
        # overriding a merged one is what merge keys are for, not a duplicate. flatten_mapping changes the node in
        # place, so remember its own keys from the first visit (an aliased mapping is visited again).
        own_keys = own_keys_by_node.setdefault(
            id(node), {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
        )
        constructor.flatten_mapping(node)  # merge keys (<<) like SafeLoader does
        explicit: set[str] = set()
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                line, col = _position(key_node)
                raise CatalogError(
                    f"mapping key {key!r} is a {type(key).__name__}, not a string",
                    path=filename,
                    line=line,
                    column=col,
                    fix=f'quote the key: "{key}":',
                )
            if key in explicit and id(key_node) in own_keys:
                line, col = _position(key_node)
                first_line, _ = marked.key_marks[(*path, key)]
                raise CatalogError(
                    f"duplicate key {key!r} (first defined on line {first_line})",
                    path=filename,
                    line=line,
                    column=col,
                    fix="remove or merge one of the two entries",
                )
            if id(key_node) in own_keys:
                explicit.add(key)
            marked.key_marks[(*path, key)] = _position(key_node)
            result[key] = _convert(value_node, (*path, key), marked, constructor, filename, own_keys_by_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, i), marked, constructor, filename, own_keys_by_node)
            for i, item in enumerate(node.value)
        ]
    marked.raw[path] = str(node.value)
    return constructor.construct_object(node, deep=True)
