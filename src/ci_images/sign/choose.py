"""Which signer or verifier the settings ask for (a cosign key, or keyless through cosign), made and checked before
anything is pushed, and how a digest is signed now (for the lock file)."""

from __future__ import annotations

from collections.abc import Mapping

from ci_images.catalog.refs import Repository
from ci_images.errors import UsageError
from ci_images.registry.documents import platform_digests
from ci_images.registry.pool import ClientPool
from ci_images.sign import keyless, keys
from ci_images.sign.signer import KeylessSigner, KeySigner, KeyVerifier, Signer, SignOutcome, Verifier


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
    policy = keyless.identity_policy(env, repository=repository, server=server)
    return KeylessSigner(env, identity=keyless.workflow_identity(env) or str(policy), policy=policy)


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
        signer = _keyless(env, default_url)
        keyless.check_signs_as(env, signer.policy)
        return signer
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
        for platform, child in sorted(platform_digests(client, repository.path, digest).items()):
            if child != digest and verifier.verify(client, repository, child).ok:
                platforms[platform] = child
    signer = verdict.signer or verifier.signer
    return SignOutcome(verifier.mode, signer, digest, (), (digest, *platforms.values()), platforms)
