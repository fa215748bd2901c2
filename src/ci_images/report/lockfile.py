"""The lock file, images.lock.json: every published tag -> digest, so consumers can pin image@sha256:...

``signatures`` records, per digest, how it is signed: ``{"signed_by": [{"key": "sha256:<fingerprint>"}]}`` or
``{"keyless": IDENTITY, "issuer": ...}``; a platform manifest signed with --recursive also names its ``index``.

``attestations`` records, per digest, the attestations that verified after the run: ``{"statements": [{"predicateType":
..., "statement": "sha256:<of the in-toto statement>", "key": ... or "keyless": ..., "envelope": "sha256:<of the
DSSE envelope>" (key mode), "describes": PLATFORM MANIFEST (an index's SBOM of one platform)}]}``, and a platform
manifest its ``index``. A consumer recomputes ``statement`` from what ``cosign verify-attestation`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images.cache import machine_lock
from ci_images.errors import UsageError
from ci_images.report.files import atomic_write
from ci_images.run.result import HELD_ACTIONS, Result

if TYPE_CHECKING:
    from ci_images.sign.attest import AttestOutcome
    from ci_images.sign.signer import SignOutcome


LOCK_VERSION = 1


def read_lock(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(images, signatures) a lock file records; empty when there is none yet. A file that is not a ci-images lock
    file is bad input (exit 2): checked before a run starts, so it never surfaces after tags have moved."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"lock file {path} cannot be read: {exc}", fix="fix its permissions or pass --lock PATH"
        ) from exc
    fix = f"delete {path} (the next push writes it again) or pass --lock PATH"
    try:
        current = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"lock file {path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})", fix=fix) from exc
    if not isinstance(current, dict) or not isinstance(current.get("images"), dict):
        raise UsageError(f"lock file {path} is not a ci-images lock file (no 'images' mapping)", fix=fix)
    if current.get("version") != LOCK_VERSION:
        raise UsageError(
            f"lock file {path} has version {current.get('version')!r}; this ci-images writes version {LOCK_VERSION}",
            fix=fix,
        )
    signatures = current.get("signatures", {})
    if not isinstance(signatures, dict):
        raise UsageError(f"lock file {path}: 'signatures' is not a mapping", fix=fix)
    return dict(current["images"]), dict(signatures)


def _add_signatures(signatures: dict[str, Any], outcomes: Iterable[SignOutcome]) -> None:
    for outcome in outcomes:
        signer = outcome.lock_record()
        for digest, index in [
            (outcome.digest, None),
            *((d, outcome.digest) for d in outcome.platforms.values()),
        ]:
            record = dict(signatures.get(digest, {}))
            signed_by = [s for s in record.get("signed_by", []) if s != signer]
            record["signed_by"] = sorted([*signed_by, signer], key=lambda s: json.dumps(s, sort_keys=True))
            if index:
                record["index"] = index
            signatures[digest] = record


def read_attestations(path: Path) -> dict[str, Any]:
    """The ``attestations`` a lock file records (after ``read_lock`` found it a lock file); {} when none."""
    if not path.is_file():
        return {}
    found = json.loads(path.read_text(encoding="utf-8")).get("attestations", {})
    return dict(found) if isinstance(found, dict) else {}


def _add_attestations(
    attestations: dict[str, Any], outcomes: Iterable[tuple[str, Sequence[AttestOutcome]]]
) -> None:
    """Record (tag digest, outcomes): each attested digest's statements as this run found them, replacing what the
    lock file said of that digest before."""
    fresh: dict[str, dict[str, Any]] = {}
    for top, found in outcomes:
        for outcome in found:
            record = fresh.setdefault(outcome.digest, {"statements": []})
            entry = outcome.lock_record()
            if all(s["statement"] != entry["statement"] for s in record["statements"]):
                record["statements"].append(entry)
            if outcome.digest != top:
                record["index"] = top
    for digest, record in fresh.items():
        record["statements"].sort(
            key=lambda s: (s.get("predicateType", ""), s.get("describes", ""), s["statement"])
        )
        attestations[digest] = record


def _write(
    path: Path, images: Mapping[str, Any], signatures: Mapping[str, Any], attestations: Mapping[str, Any]
) -> dict[str, Any]:
    lock: dict[str, Any] = {"version": LOCK_VERSION, "images": dict(sorted(images.items()))}
    if signatures:
        lock["signatures"] = dict(sorted(signatures.items()))
    if attestations:
        lock["attestations"] = dict(sorted(attestations.items()))
    atomic_write(path, json.dumps(lock, indent=2) + "\n")
    return lock


def _record(
    tag: str,
    digest: str,
    source: str,
    source_digest: str | None,
    platforms: Collection[str],
    *,
    built: str | None = None,
) -> dict[str, Any]:
    return {
        "digest": digest,
        "pinned": f"{tag.rsplit(':', 1)[0]}@{digest}",
        "source": source,
        "source_digest": source_digest,
        "platforms": sorted(platforms),  # the same whichever run wrote it (index or catalog order)
        # assembled, engine or mirror: verify-images --rebuild re-assembles the first
        **({"built": built} if built else {}),
    }


def update_lock(
    path: Path, results: Sequence[Result], *, catalog_tags: Collection[str] | None = None
) -> dict[str, Any]:
    """Merge this run into the lock file: every target tag -> digest, source digest and platforms, and how each
    digest is signed.

    Tags this run did not touch (other images, filtered out with --images, or failed) keep their recorded values;
    with ``catalog_tags`` (every tag the catalog has on this run's target) any other tag is dropped: a version
    removed from the catalog, or another registry's. Signature records of digests no tag points to any more are
    dropped. Two runs on one machine update it one after the other (a file lock), so neither loses the other's tags.
    """
    with machine_lock(f"lockfile:{path.resolve()}"):
        return _update(path, results, catalog_tags)


def _update(path: Path, results: Sequence[Result], catalog_tags: Collection[str] | None) -> dict[str, Any]:
    images, signatures = read_lock(path)
    attestations = read_attestations(path)
    if catalog_tags is not None:
        images = {tag: record for tag, record in images.items() if tag in catalog_tags}
    for r in results:
        if not r.digest or r.action not in HELD_ACTIONS:
            continue
        for tag in r.tags:
            raced = r.raced.get(tag)
            if raced is None:
                images[tag] = _record(tag, r.digest, r.source, r.source_digest, r.platforms, built=r.built)
            elif raced.digest is None:  # another writer deleted it: the registry has no such tag
                images.pop(tag, None)
            else:  # another writer moved it: what the registry holds, not this run's digest
                images[tag] = _record(tag, raced.digest, raced.source, raced.source_digest, raced.platforms)
    _add_signatures(
        signatures,
        (r.signature for r in results if r.signature is not None and r.action in HELD_ACTIONS),
    )
    _add_signatures(signatures, (s for r in results if r.action in HELD_ACTIONS for s in r.raced_signatures))
    _add_attestations(
        attestations,
        ((r.digest, r.attestations) for r in results if r.digest and r.action in HELD_ACTIONS),
    )
    held = {record["digest"] for record in images.values()}
    signatures = {d: s for d, s in signatures.items() if d in held or s.get("index") in held}
    attestations = {d: a for d, a in attestations.items() if d in held or a.get("index") in held}
    return _write(path, images, signatures, attestations)


def record_signatures(path: Path, outcomes: Sequence[SignOutcome]) -> dict[str, Any]:
    """sign-images: add how these digests are signed, leaving every tag record as it is."""
    with machine_lock(f"lockfile:{path.resolve()}"):
        images, signatures = read_lock(path)
        _add_signatures(signatures, outcomes)
        return _write(path, images, signatures, read_attestations(path))
