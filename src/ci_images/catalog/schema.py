"""Catalog errors that point into ``images.yaml``: the JSON Schema pass, and the file:line:column helper.

``validate_schema`` turns the first JSON Schema violation into a CatalogError that says, in the catalog's own terms,
what is wrong and how to fix it; ``located_error`` builds such an error for the semantic checks in catalog.py.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any, Protocol

from ci_images.catalog.yamlmarks import Marked
from ci_images.errors import CatalogError

if TYPE_CHECKING:
    import jsonschema


class Memo(Protocol):
    """Where catalogs that passed the schema are remembered (``ci_images.cache.FileMemo``)."""

    def __contains__(self, key: object) -> bool: ...

    def add(self, key: str) -> None: ...


@cache
def _schema_bytes() -> bytes:
    return resources.files("ci_images.catalog").joinpath("catalog.schema.json").read_bytes()


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_schema_bytes())
    return loaded


def memo_key(source: bytes) -> str | None:
    """What a pass of the schema depends on: the catalog's bytes, the schema's, and the validator's version (None,
    so nothing is remembered, where jsonschema is not an installed distribution and has no version to name)."""
    try:
        version = metadata.version("jsonschema")
    except metadata.PackageNotFoundError:
        return None
    digest = hashlib.sha256(b"ci-images catalog schema pass\0")
    for part in (_schema_bytes(), version.encode(), source):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def located_error(
    marked: Marked, name: str, path: Sequence[str | int], message: str, fix: str, *, key: bool = False
) -> CatalogError:
    line, column = marked.where(path, key=key)
    return CatalogError(message, path=name, line=line, column=column, fix=fix)


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_TYPE_WORDS = {
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
    "date": "a date",
}


def _json_type(value: object) -> str:
    if isinstance(value, datetime.date):
        return "date"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def validate_schema(
    marked: Marked, name: str, *, source: bytes | None = None, memo: Memo | None = None
) -> None:
    """The first JSON Schema violation as a CatalogError. With ``memo`` and the catalog's ``source`` bytes, a
    catalog that passed before is not checked again: jsonschema (with attrs and referencing, a tenth of a second
    of imports) loads only for a catalog this machine has not seen pass. A failure is never remembered."""
    if not isinstance(marked.data, dict):
        raise located_error(
            marked,
            name,
            (),
            "the catalog must be a mapping with an 'images' key",
            "start from the README's example",
        )
    key = memo_key(source) if memo is not None and source is not None else None
    if key is not None and memo is not None and key in memo:
        return
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(marked.data), key=lambda e: marked.where(tuple(e.absolute_path)))
    if errors:
        raise _schema_error(marked, name, errors[0])
    if key is not None and memo is not None:
        memo.add(key)


_IMAGE_NAME_FIX = (
    "use lowercase letters and digits with single separators (. _ -) between them, like local-kms"
)
_VARIABLE_FIX = "variable names use letters, digits and '_' and do not start with a digit, like PORT"
# The mapping whose key is a bad name -> how to name it.
_NAME_FIXES = {
    "build_args": "build arg names use letters, digits and '_' and do not start with a digit, like KMS_SEED",
    "env": _VARIABLE_FIX,
    "port_env": _VARIABLE_FIX,
}


def _schema_error(marked: Marked, name: str, error: jsonschema.ValidationError) -> CatalogError:
    path = tuple(error.absolute_path)
    where = _dotted(path)
    instance = error.instance
    if error.validator == "additionalProperties":
        schema_node = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = sorted(schema_node.get("properties", {}))
        unknown = sorted(set(instance) - set(allowed)) if isinstance(instance, dict) else []
        key = unknown[0] if unknown else "?"
        return located_error(
            marked,
            name,
            (*path, key),
            f"unknown key {key!r} in {where}",
            f"allowed keys here: {', '.join(allowed)}; check the spelling",
            key=True,
        )
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else "?"
        return located_error(
            marked,
            name,
            path,
            f"{where} is missing the required key {missing!r}",
            f"add '{missing}:' to {where}",
        )
    if "propertyNames" in error.schema_path:
        # jsonschema reports a bad key against the mapping that holds it; point at the key itself.
        bad = str(instance)
        fix = _NAME_FIXES.get(str(path[-1]) if path else "", _IMAGE_NAME_FIX)
        return located_error(marked, name, (*path, bad), f"invalid name {bad!r} in {where}", fix, key=True)
    if error.validator == "type":
        expected = error.validator_value
        expected_types = [str(t) for t in (expected if isinstance(expected, list) else [expected])]
        scalar_for_string = "string" in expected_types and isinstance(
            instance, (int, float, bool, datetime.date)
        )
        if scalar_for_string:
            # versions: [1.10] is an unquoted tag, whatever else the place allows (a version may be a mapping too).
            expected_types = ["string"]
        expected_text = " or ".join(_TYPE_WORDS.get(t, t) for t in expected_types)
        raw = marked.raw.get(path)
        kind = _json_type(instance)
        shown = raw if raw is not None and kind == "date" else repr(instance)
        fix = f"write {expected_text} here"
        if scalar_for_string or (expected == "string" and isinstance(instance, datetime.date)):
            written = raw if raw is not None else str(instance)
            reads = "a date" if kind == "date" else repr(instance)
            fix = f'quote it: "{written}" (YAML reads {written} unquoted as {reads})'
        return located_error(
            marked,
            name,
            path,
            f"{where} must be {expected_text}, not {_TYPE_WORDS[kind]} {shown}",
            fix,
        )
    if error.validator in {"minItems", "minProperties", "minLength"}:
        return located_error(
            marked, name, path, f"{where} must not be empty", f"give {where} at least one value"
        )
    if error.validator == "maxProperties" and isinstance(instance, dict):
        return _two_probe_types(marked, name, path, instance)
    if error.validator == "uniqueItems":
        return located_error(marked, name, path, f"{where} lists a value twice", "remove the duplicate")
    return located_error(
        marked, name, path, f"{where}: {error.message}", "see the catalog reference in README.md"
    )


def _two_probe_types(
    marked: Marked, name: str, path: tuple[str | int, ...], probe: Mapping[str, Any]
) -> CatalogError:
    """Only a smoke probe is limited to one key: the key names its type. Point at the second one written."""
    in_order = sorted(probe, key=lambda k: tuple(n or 0 for n in marked.where((*path, k), key=True)))
    return located_error(
        marked,
        name,
        (*path, in_order[1]),
        f"{_dotted(path)} names {len(probe)} probe types ({', '.join(sorted(probe))}); a probe has one",
        "write each probe as its own list item: `- tcp: {...}` then `- http: {...}`",
        key=True,
    )


__all__ = [
    "located_error",
    "schema",
    "validate_schema",
]
