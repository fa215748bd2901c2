"""sign-images and verify-images: walk the catalog's tags on the target (HEAD requests), then sign or verify the
digests they point to now. Nothing here writes an image tag; signing writes only ``.sig`` tags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ci_images.catalog.refs import Repository
from ci_images.errors import UsageError
from ci_images.log import Logger
from ci_images.plan.entries import Entry
from ci_images.registry import oci
from ci_images.registry.pool import ClientPool
from ci_images.run.report import Result
from ci_images.sign import keyless, keys
from ci_images.sign.signer import KeylessSigner, KeySigner, KeyVerifier, Signer, SignOutcome, Verifier
from ci_images.sign.verify import MISSING, Verdict

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
    pool: ClientPool, held: Sequence[HeldTag], verifier: Verifier, locked: Mapping[str, Any]
) -> list[TagCheck]:
    """Check every tag: its digest's signature (verified once per digest) and the lock file's record."""
    verdicts: dict[tuple[Repository, str], Verdict] = {}
    checks: list[TagCheck] = []
    for one in held:
        verdict = None
        if one.digest is not None:
            key = (one.entry.target, one.digest)
            if key not in verdicts:
                client = pool.get(one.entry.target.api_host)
                verdicts[key] = verifier.verify(client, one.entry.target, one.digest)
            verdict = verdicts[key]
        record = locked.get(one.ref)
        checks.append(
            _judge(one, record.get("digest") if isinstance(record, dict) else None, verdict, verifier.mode)
        )
    return checks


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
    return "sign what is yours (`invoke sign-images`), or find out who published or re-signed these tags"


def print_checks(checks: Sequence[TagCheck], logger: Logger) -> None:
    """The table for people; in GitHub Actions also the step summary."""
    _table(checks, logger)
    if logger.github:
        lines = ["### ci-images: verify", "", "| tag | digest | result | detail |", "|---|---|---|---|"]
        for c in checks:
            short = c.digest.split(":", 1)[-1][:12] if c.digest else "-"
            result = "✅ ok" if c.ok else f"❌ {c.problem}"
            lines.append(f"| {c.ref} | `{short}` | {result} | {c.message.replace('|', '/')} |")
        logger.step_summary("\n".join(lines) + "\n")


def _table(checks: Sequence[TagCheck], logger: Logger) -> None:
    rows = [
        [
            c.ref,
            c.digest.split(":", 1)[-1][:12] if c.digest else "-",
            "ok" if c.ok else c.problem or "",
            c.message,
        ]
        for c in checks
    ]
    headers = ["tag", "digest", "result", "detail"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        logger.info("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# ---- what signs and what verifies, from the settings ------------------------------------------------------------


def source_repository(env: Mapping[str, str], default_url: str) -> tuple[str, str]:
    """(server, OWNER/NAME) of the repository whose workflows sign keylessly: in Actions the signing workflow's own
    (keyless.signing_repository), else the default."""
    repository = keyless.signing_repository(env)
    if repository:
        return env.get("GITHUB_SERVER_URL", keyless.DEFAULT_SERVER), repository
    scheme, _, rest = default_url.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}", path.strip("/")


def _keyless(env: Mapping[str, str], default_url: str) -> KeylessSigner:
    server, repository = source_repository(env, default_url)
    regexp = keyless.identity_regexp(repository, server)
    return KeylessSigner(env, identity=keyless.workflow_identity(env) or regexp, regexp=regexp)


def configured_signer(
    key_ref: str | None, keyless_on: bool, env: Mapping[str, str], *, default_url: str
) -> Signer | None:
    """The signer the settings ask for, checked now (key decrypted, cosign and the OIDC token present), so a wrong
    password or a missing permission stops the run with exit 2 before anything is pushed."""
    if key_ref and keyless_on:
        raise UsageError(
            "both a signing key (COSIGN_KEY / --signing-key) and keyless signing (--keyless) are set",
            fix="choose one: unset COSIGN_KEY for keyless signing, or drop --keyless / CI_IMAGES_SIGN_KEYLESS",
        )
    if key_ref:
        return KeySigner(keys.load_signing_key(key_ref, env))
    if keyless_on:
        keyless.check_can_sign(env)
        return _keyless(env, default_url)
    return None


def lock_verifier(
    key_ref: str | None, keyless_on: bool, env: Mapping[str, str], *, default_url: str
) -> Verifier | None:
    """What `ci --lock-only` checks each digest with, to record who signed it: the signing key (its public half), or
    keyless verification through cosign, which needs cosign on PATH but no OIDC token (verifying only reads)."""
    if key_ref and keyless_on:
        return configured_signer(key_ref, keyless_on, env, default_url=default_url)  # raises: choose one
    if key_ref:
        return KeySigner(keys.load_signing_key(key_ref, env))
    if not keyless_on:
        return None
    if not keyless.cosign_on_path(env):
        raise UsageError(
            "recording keyless signatures needs the cosign CLI, and it is not on PATH",
            fix="install it (in GitHub Actions: sigstore/cosign-installer), or drop --keyless / CI_IMAGES_SIGN_KEYLESS",
        )
    return _keyless(env, default_url)


def observed_signature(
    pool: ClientPool, repository: Repository, digest: str, verifier: Verifier, *, recursive: bool
) -> SignOutcome | None:
    """How ``digest`` is signed now, as the lock file records it (None: not by this key or identity). Reads only."""
    client = pool.get(repository.api_host)
    verdict = verifier.verify(client, repository, digest)
    if not verdict.ok:
        return None
    platforms: dict[str, str] = {}
    if recursive:
        for platform, child in sorted(oci.platform_digests(client, repository.path, digest).items()):
            if child != digest and verifier.verify(client, repository, child).ok:
                platforms[platform] = child
    signer = verdict.signer or verifier.signer
    return SignOutcome(verifier.mode, signer, digest, (), (digest, *platforms.values()), platforms)


def with_observed_signatures(
    pool: ClientPool, held: Sequence[tuple[Result, Repository]], verifier: Verifier, *, recursive: bool
) -> list[Result]:
    """The lock-only path's results, each with how its digest is signed now (one verification per digest)."""
    seen: dict[tuple[Repository, str], SignOutcome | None] = {}
    results = []
    for result, repository in held:
        if result.digest is None:
            results.append(result)
            continue
        key = (repository, result.digest)
        if key not in seen:
            seen[key] = observed_signature(pool, repository, result.digest, verifier, recursive=recursive)
        results.append(replace(result, signature=seen[key]))
    return results


def configured_verifier(key_ref: str | None, env: Mapping[str, str], *, default_url: str) -> Verifier:
    """--key's public key; without one, keyless verification through cosign when it is on PATH."""
    if key_ref:
        data = keys.read_key_ref(key_ref, env, what="--key")
        return KeyVerifier(keys.load_public_key(data, where=f"--key {key_ref}"))
    if keyless.cosign_on_path(env):
        return _keyless(env, default_url)
    raise UsageError(
        "no key to verify with, and no cosign on PATH for keyless verification",
        fix="pass --key cosign.pub (the public key of COSIGN_KEY), or install cosign",
    )
