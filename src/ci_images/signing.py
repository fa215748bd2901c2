"""The signing commands: generate-key, sign-images, verify-images (push-images signs through ``app``).

cosign-compatible signatures through ``ci_images.sign`` (keys, payloads, ``.sig`` images, keyless via cosign) and
``ci_images.run.signatures`` (which digests the catalog's tags hold, and what each check found).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ci_images.app import signer_for
from ci_images.errors import SigningError, UsageError
from ci_images.log import log
from ci_images.options import Options
from ci_images.run import lockfile, signatures
from ci_images.wiring import DEFAULT_SOURCE_URL, emit_json, lock_file, target_entries


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
    signer = signer_for(options)
    if signer is None:
        raise UsageError(
            "nothing to sign with",
            fix="set COSIGN_KEY (a path or env://VAR) and COSIGN_PASSWORD, or pass --keyless in GitHub Actions",
        )
    catalog, pool, entries = target_entries(options)
    try:
        held = signatures.held_tags(pool, entries)
        done = signatures.sign_held(pool, held, signer, recursive=options.recursive)
    finally:
        pool.close()
    records = signatures.sign_records(done, held, log)
    emit_json(options, records)
    lockfile.record_signatures(lock_file(options, catalog), [outcome for _, _, outcome in done])
    return records


def verify_images(options: Options) -> list[signatures.TagCheck]:
    """Check every catalog tag on the target: signed by the key (or keyless identity), payload names the digest and
    the repository, and the tag points where the lock file says. Exit 9 names every failure."""
    verifier = signatures.configured_verifier(options.key, options.env, default_url=DEFAULT_SOURCE_URL)
    catalog, pool, entries = target_entries(options)
    locked, _ = lockfile.read_lock(lock_file(options, catalog))
    try:
        checks = signatures.verify_held(pool, signatures.held_tags(pool, entries), verifier, locked)
    finally:
        pool.close()
    signatures.print_checks(checks, log)
    emit_json(options, [check.as_record() for check in checks])
    failed = [check for check in checks if not check.ok]
    if failed:
        raise SigningError(
            f"{len(failed)} of {len(checks)} tags failed verification: "
            + "; ".join(f"{check.ref}: {check.message}" for check in failed),
            fix=signatures.verify_fix(failed),
        )
    published = [check for check in checks if check.digest is not None]
    unpublished = len(checks) - len(published)
    if not published:
        log.warning(f"nothing verified: none of the {len(checks)} tags is on the target (and none is locked)")
        return checks
    log.info(
        f"{'all ' if not unpublished else ''}{len(published)} published tags verified "
        f"({verifier.mode}: {verifier.signer})" + (f"; {unpublished} not published" if unpublished else "")
    )
    return checks
