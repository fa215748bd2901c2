"""The signing commands: generate-key, sign-images and verify-images, and their work: walking the catalog's tags on
the target (HEAD requests), signing or verifying what they point to now, judging each tag against the lock file,
and printing what was found. The formats, keys, signers and verifiers are the library in ``ci_images.sign``.
Nothing here writes an image tag; signing writes only ``.sig`` tags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images.catalog.refs import Repository
from ci_images.commands.options import Options
from ci_images.commands.outcome import emit_json
from ci_images.commands.setup import DEFAULT_SOURCE_URL, prepare
from ci_images.errors import SigningError, UsageError
from ci_images.log import Logger, log
from ci_images.oci import short_digest
from ci_images.plan.entries import Entry
from ci_images.plan.recipe import BASE_NAME_LABEL, SOURCE_DIGEST_LABEL
from ci_images.registry import documents
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool
from ci_images.report import lockfile
from ci_images.sign.choose import configured_verifier
from ci_images.sign.signer import Signer, SignOutcome, Verifier
from ci_images.sign.verify import MISSING, Verdict

if TYPE_CHECKING:
    from ci_images.run.rebuild import RebuildCheck
    from ci_images.sign.attach import DigestCheck
    from ci_images.sign.attest_verify import AttestationChecker


def generate_key(options: Options) -> Path:
    """cosign.key (encrypted with COSIGN_PASSWORD, mode 0600) and cosign.pub; never overwrites a key."""
    from ci_images.sign.keys import generate_key_files

    key, public, fingerprint = generate_key_files(Path(options.output or "."), options.env)
    log.info(f"private key written to {key} (encrypted, mode 0600); public key written to {public}")
    log.info(f"key fingerprint: {fingerprint}")
    log.info(f"sign with: COSIGN_KEY={key} COSIGN_PASSWORD=... invoke push-images")
    return key


def sign_images(options: Options) -> list[dict[str, Any]]:
    """Sign the digests the catalog's tags point to on the target now, where this key (or identity) has not."""
    with prepare(options, with_signer=True) as setup:
        if setup.signer is None:
            raise UsageError(
                "nothing to sign with",
                fix="set COSIGN_KEY (a path or env://VAR) and COSIGN_PASSWORD, or pass --keyless in GitHub Actions",
            )
        setup.start_destination()
        setup.check_target()
        held = held_tags(setup.target_pool, setup.entries)
        done = sign_held(setup.target_pool, held, setup.signer, recursive=options.sign_recursive)
    records = sign_records(done, held, log)
    emit_json(options, records)
    lockfile.record_signatures(setup.lock_path, [outcome for _, _, outcome in done])
    return records


def verify(options: Options) -> object:
    """verify-images: the signatures (below), or with --rebuild that every assembled tag is what its inputs make."""
    return verify_rebuilt(options) if options.rebuild else verify_images(options)


def verify_rebuilt(options: Options) -> list[RebuildCheck]:
    """Assemble every assembled entry again from the catalog, its build folder and the upstream digest the lock file
    pins (nothing is uploaded) and compare with what each tag holds; exit 9 names every entry that differs."""
    from ci_images.run.rebuild import rebuild_checks
    from ci_images.run.settings import repository_url

    with prepare(options, preflight=True) as setup:
        locked, _ = lockfile.read_lock(setup.lock_path)
        setup.start_destination()
        ctx = setup.context()
        checks = rebuild_checks(
            ctx, setup.entries, locked, source_url=repository_url(options.env, DEFAULT_SOURCE_URL)
        )
    rows = [[c.ref, short_digest(c.published), short_digest(c.rebuilt), c.status, c.detail] for c in checks]
    _rows(["tag", "published", "rebuilt", "result", "detail"], rows, log)
    emit_json(options, [check.as_record() for check in checks])
    failed = [check for check in checks if not check.ok]
    if failed:
        raise SigningError(
            f"{len(failed)} of {len(checks)} tags are not what their inputs make: "
            + "; ".join(f"{check.entry.key}: {check.ref}: {check.detail}" for check in failed),
            fix="rebuild where the image was published from (same catalog, build folder and commit history; the same "
            "SOURCE_DATE_EPOCH if one was set) and compare; a tag nobody rebuilt from these inputs was changed "
            "after its push: push again (`invoke push-images --force --images ENTRY`)",
        )
    same = sum(check.status == "same" for check in checks)
    log.info(f"{same} of {len(checks)} tags hold exactly what their inputs make; none differs")
    return checks


def verify_images(options: Options) -> list[TagCheck]:
    """Check every catalog tag on the target: signed by the key (or keyless identity), payload names the digest and
    the repository, and the tag points where the lock file says; each platform manifest signed too; every digest of
    the image attested (provenance naming the upstream digest the lock file and the labels say, and SBOM). Exit 9
    names every failure."""
    from ci_images.sign.attach import checker_for

    verifier = configured_verifier(options.key, options.env, default_url=DEFAULT_SOURCE_URL)
    with prepare(options) as setup:
        locked, _ = lockfile.read_lock(setup.lock_path)
        setup.start_destination()
        setup.check_target()
        held = held_tags(setup.target_pool, setup.entries)
        checker = None if options.no_attest else checker_for(verifier)
        checks = verify_held(setup.target_pool, held, verifier, locked, checker=checker)
    print_checks(checks, log)
    emit_json(options, [check.as_record() for check in checks])
    failed = [check for check in checks if not check.ok]
    if failed:
        raise SigningError(
            f"{len(failed)} of {len(checks)} tags failed verification: "
            + "; ".join(f"{check.ref}: {check.message}" for check in failed),
            fix=verify_fix(failed),
        )
    published = [check for check in checks if check.digest is not None]
    unpublished = len(checks) - len(published)
    if not published:
        log.warning(f"nothing verified: none of the {len(checks)} tags is on the target (and none is locked)")
        return checks
    extra = len({(c.ref.rsplit(":", 1)[0], d.digest, d.check) for c in published for d in c.checks})
    log.info(
        f"{'all ' if not unpublished else ''}{len(published)} published tags verified, with {extra} platform "
        f"signatures and attestations ({verifier.mode}: {verifier.signer})"
        + (f"; {unpublished} not published" if unpublished else "")
    )
    return checks


# ---- the work: walk the tags, sign or verify, judge, print ---------------------------------------------------


# verify-images' problems beyond the signature's own (sign.verify: missing, payload-edited, signature-edited,
# wrong-key; keyless): the tag and the lock file disagree, or the lock file does not know the tag.
MOVED_UNSIGNED, MOVED, NOT_LOCKED, ABSENT = "moved-unsigned", "moved", "not-locked", "absent"


@dataclass(frozen=True)
class HeldTag:
    entry: Entry
    tag: str  # tag name
    digest: str | None  # what it points to now; None: the tag does not exist

    @property
    def ref(self) -> str:
        return self.entry.target.with_tag(self.tag)


def held_tags(pool: ClientPool, entries: Sequence[Entry]) -> list[HeldTag]:
    """Every tag of ``entries`` and the digest it points to on the target now (one HEAD per tag)."""
    held: list[HeldTag] = []
    for entry in entries:
        client = pool.get(entry.target.api_host)
        for tag in entry.tags:
            info = client.head_manifest(entry.target.path, tag)
            held.append(HeldTag(entry, tag, info.digest if info else None))
    return held


def sign_held(
    pool: ClientPool, held: Sequence[HeldTag], signer: Signer, *, recursive: bool
) -> list[tuple[Repository, list[str], SignOutcome]]:
    """Sign each digest the tags point to (once per repository and digest) unless this signer signed it already."""
    groups: dict[tuple[Repository, str], list[str]] = {}
    for one in held:
        if one.digest is not None:
            groups.setdefault((one.entry.target, one.digest), []).append(one.ref)
    done: list[tuple[Repository, list[str], SignOutcome]] = []
    for (repository, digest), refs in groups.items():
        outcome = signer.sign(pool.get(repository.api_host), repository, digest, recursive=recursive)
        done.append((repository, refs, outcome))
    return done


def sign_records(
    done: Sequence[tuple[Repository, list[str], SignOutcome]], held: Sequence[HeldTag], logger: Logger
) -> list[dict[str, Any]]:
    """sign-images' records (one per repository and digest), told to ``logger`` too."""
    records = [{"repository": str(repo), "tags": refs, **outcome.as_record()} for repo, refs, outcome in done]
    for record in records:
        state = "signed now" if record["signed"] else "already signed"
        logger.info(f"{record['repository']}@{record['digest']}: {state} ({', '.join(record['tags'])})")
    absent = [one.ref for one in held if one.digest is None]
    if absent:
        logger.warning(f"not on the target, not signed: {', '.join(absent)}")
    signed = sum(len(record["signed"]) for record in records)
    logger.info(f"{signed} manifests signed now; {len(records)} digests checked")
    return records


@dataclass(frozen=True)
class TagCheck:
    """verify-images' finding for one tag."""

    ref: str
    digest: str | None
    locked: str | None
    problem: str | None
    message: str
    mode: str
    signer: str | None = None
    checks: tuple[DigestCheck, ...] = ()  # each platform's signature, each digest's attestations

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_record(self) -> dict[str, Any]:
        return {
            "tag": self.ref,
            "digest": self.digest,
            "locked_digest": self.locked,
            "ok": self.ok,
            "problem": self.problem,
            "message": self.message,
            "mode": self.mode,
            "signer": self.signer,
            "checks": [check.as_record() for check in self.checks],
        }


def _judge(one: HeldTag, locked: str | None, verdict: Verdict | None, mode: str) -> TagCheck:
    def check(problem: str | None, message: str) -> TagCheck:
        signer = verdict.signer if verdict is not None and verdict.ok else None
        return TagCheck(one.ref, one.digest, locked, problem, message, mode, signer)

    if one.digest is None or verdict is None:
        if locked:
            return check(ABSENT, f"the tag does not exist; the lock file records {locked}")
        return check(None, "not published (no tag, no lock record)")
    if locked and locked != one.digest:
        if verdict.problem == MISSING:
            return check(
                MOVED_UNSIGNED,
                f"tag moved to an unsigned digest: it points to {one.digest}, the lock file records {locked}",
            )
        if verdict.ok:
            return check(
                MOVED, f"tag moved: it points to {one.digest} (signed), the lock file records {locked}"
            )
        return check(verdict.problem, f"{verdict.message}; and the tag moved from {locked}")
    if not verdict.ok:
        return check(verdict.problem, verdict.message)
    if not locked:
        return check(
            NOT_LOCKED, f"signed, but the lock file records no digest for this tag ({verdict.message})"
        )
    return check(None, verdict.message)


def verify_held(
    pool: ClientPool,
    held: Sequence[HeldTag],
    verifier: Verifier,
    locked: Mapping[str, Any],
    *,
    checker: AttestationChecker | None = None,
) -> list[TagCheck]:
    """Check every tag: its digest's signature (verified once per digest) and the lock file's record; then (once per
    digest) each platform manifest's signature and, with ``checker``, the attestations of every digest."""
    verdicts: dict[tuple[Repository, str], Verdict] = {}
    extra: dict[tuple[Repository, str], tuple[DigestCheck, ...]] = {}
    checks: list[TagCheck] = []
    for one in held:
        verdict = None
        record = locked.get(one.ref)
        record = record if isinstance(record, dict) else {}
        if one.digest is not None:
            key = (one.entry.target, one.digest)
            if key not in verdicts:
                client = pool.get(one.entry.target.api_host)
                verdicts[key] = verifier.verify(client, one.entry.target, one.digest)
                extra[key] = _image_checks(client, one, verifier, checker, record.get("source_digest"))
            verdict = verdicts[key]
        check = _judge(one, record.get("digest"), verdict, verifier.mode)
        checks.append(_with_image_checks(check, extra.get((one.entry.target, one.digest or ""), ())))
    return checks


def _image_checks(
    client: RegistryClient,
    one: HeldTag,
    verifier: Verifier,
    checker: AttestationChecker | None,
    locked_upstream: str | None,
) -> tuple[DigestCheck, ...]:
    """The platform signatures and attestations of the image ``one`` points to. The provenance must name the
    upstream digest the lock file records and the image's own base.digest label says (a label is ours when its
    base.name is the entry's upstream reference: an exact mirror carries upstream's own labels)."""
    from ci_images.sign.attach import check_image, read_image

    assert one.digest is not None
    repository = one.entry.target
    expected = {locked_upstream} if locked_upstream else set()
    if checker is not None:
        labels = documents.read_held(client, repository.path, one.digest)
        if labels is not None and labels.labels.get(BASE_NAME_LABEL) == one.entry.source_ref:
            expected |= (
                {labels.labels[SOURCE_DIGEST_LABEL]} if SOURCE_DIGEST_LABEL in labels.labels else set()
            )
    image = read_image(client, repository, one.digest)
    found = check_image(
        client, repository, image, verifier=verifier, checker=checker, expected_upstreams=expected
    )
    return tuple(found)


def _with_image_checks(check: TagCheck, found: tuple[DigestCheck, ...]) -> TagCheck:
    """``check`` with the image's other checks; the first that failed is the tag's problem when nothing else was."""
    failed = [c for c in found if not c.ok]
    if not check.ok or not failed:
        return replace(check, checks=found)
    first = failed[0]
    where = first.platform or "index"
    return replace(
        check, problem=first.problem, message=f"{where} {first.check}: {first.message}", checks=found
    )


def verify_fix(failed: Sequence[TagCheck]) -> str:
    """What to do about verify-images' failures. A tag that no longer points where the lock file says is not to be
    signed over: someone moved it, and signing what it points to now would bless that."""
    if any(check.problem in (MOVED, MOVED_UNSIGNED, ABSENT) for check in failed):
        return (
            "find out who moved these tags before signing anything; if a publish of yours moved them, record it "
            "with `nox -s ci-images -- --lock-only` (or push again)"
        )
    if any(check.problem == NOT_LOCKED for check in failed):
        return "record the published tags in the lock file: `nox -s ci-images -- --lock-only` (or push again)"
    attestation_problems = {
        check.problem
        for check in failed
        if check.problem and check.problem.startswith(("attestation-", "provenance-"))
    }
    if attestation_problems == {"attestation-missing"}:
        return (
            "attestations are made when an image is published with a key or in GitHub Actions (sign-images signs, "
            "it does not attest): `invoke push-images --force --images GLOB` publishes and attests it again"
        )
    if attestation_problems:
        return (
            "find out who wrote these .att tags; attestations are made when an image is published: "
            "`invoke push-images --force --images GLOB` publishes and attests it again"
        )
    return "sign what is yours (`invoke sign-images`), or find out who published or re-signed these tags"


def print_checks(checks: Sequence[TagCheck], logger: Logger) -> None:
    """The table for people; in GitHub Actions also the step summary."""
    _table(checks, logger)
    if logger.github:
        lines = ["### ci-images: verify", "", "| tag | digest | result | detail |", "|---|---|---|---|"]
        for c in checks:
            short = short_digest(c.digest)
            result = "✅ ok" if c.ok else f"❌ {c.problem}"
            lines.append(f"| {c.ref} | `{short}` | {result} | {c.message.replace('|', '/')} |")
        logger.step_summary("\n".join(lines) + "\n")


def _table(checks: Sequence[TagCheck], logger: Logger) -> None:
    rows = [
        [
            c.ref,
            short_digest(c.digest),
            "ok" if c.ok else c.problem or "",
            c.message,
        ]
        for c in checks
    ]
    _rows(["tag", "digest", "result", "detail"], rows, logger)


def _rows(headers: Sequence[str], rows: Sequence[Sequence[str]], logger: Logger) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        logger.info("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
