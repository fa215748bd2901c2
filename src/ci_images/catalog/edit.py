"""Adding versions to the catalog's text in place (`invoke bump`): comments, quoting, key order and layout kept.

ruamel.yaml's round-trip mode reads the file into commented maps and sequences and writes back what it read;
only the sequences we append to change. Pure: text in, text out; the caller validates and writes the result.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

# (mapping, sequence, offset) indents to try, the common block-sequence styles first; flow sequences ignore them.
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4))


def _yaml(indent: tuple[int, int, int]) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long description
    yaml.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    return yaml


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _matching_yaml(text: str) -> tuple[YAML, Any]:
    """A round-trip YAML whose output of the unchanged file is the file itself (its indentation style found)."""
    for indent in _INDENTS:
        yaml = _yaml(indent)
        data = yaml.load(text)
        if _dump(yaml, data) == text:
            return yaml, data
    yaml = _yaml(_INDENTS[0])
    return yaml, yaml.load(text)


def _scalar(version: str, like: object) -> str:
    """``version`` quoted as its neighbours are; a plain neighbour stays plain unless YAML would not read a string."""
    if isinstance(like, ScalarString):
        quoted: str = type(like)(version)
        return quoted
    plain = YAML(typ="safe").load(version)
    return version if isinstance(plain, str) else DoubleQuotedScalarString(version)


def add_versions(text: str, additions: Mapping[str, Sequence[str]]) -> str:
    """``text`` with each image's new versions appended to its ``versions`` list (those already there skipped).

    ValueError when the text is not YAML or an image has no ``versions`` list to append to.
    """
    try:
        yaml, data = _matching_yaml(text)
    except YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from exc
    for image, versions in additions.items():
        try:
            listed = data["images"][image]["versions"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"image {image!r} has no 'versions' list") from exc
        if not isinstance(listed, list):
            raise ValueError(f"image {image!r}: 'versions' is not a list")  # noqa: TRY004  (bad input, not a bug)
        # A listed version is a string, or a mapping with its own settings ({version: ..., source: ...}).
        present = {str(item.get("version")) if isinstance(item, dict) else str(item) for item in listed}
        plain = [item for item in listed if not isinstance(item, dict)]
        for version in versions:
            if version not in present:
                listed.append(_scalar(version, plain[-1] if plain else None))
                present.add(version)
    return _dump(yaml, data)
