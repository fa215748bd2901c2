"""cosign attestations with a key: in-toto statements in DSSE envelopes under ``sha256-<hex>.att``, byte-compatible
with what ``cosign attest --key`` writes and ``cosign verify-attestation --key --insecure-ignore-tlog`` reads.

The ``.att`` image (sigstore/cosign specs/ATTESTATION_SPEC.md; cmd/cosign/cli/attest/attest.go, legacy path) has the
``.sig`` layout (``payload``: go-containerregistry's empty image, one ``mutate.Append`` per attestation): one layer
per attestation, the envelope JSON itself, uncompressed, media type ``application/vnd.dsse.envelope.v1+json``,
annotations ``predicateType`` (the statement's) and ``dev.cosignproject.cosign/signature`` = "" (pkg/oci/static
``NewAttestation``: the signature lives inside the envelope). Several attestations of one digest (provenance, SBOMs)
are layers of the one tag (pkg/oci/remote/write.go ``WriteAttestations``); cosign's verifier keeps the layers that
verify and then filters them by predicate type (pkg/cosign/verify.go ``VerifyImageAttestation``,
pkg/policy/attestation.go).

Two annotations of ours ride along, as on ``.sig`` layers (cosign keeps what it does not know): the signer's
fingerprint (for diagnosis only: verification never trusts it) and ``describes``, what an attestation is about
beyond its subject (an index's SBOM of one platform). Re-running adds nothing when the tag already holds an
attestation that verifies with this key, names this digest, has this predicate type and describes the same thing.
cosign itself appends every time (its duplicate detector skips layers without a signature annotation); we don't,
so a regenerated SBOM, whose bytes differ by its timestamps and namespace, is not added again: the subject digest
fixes the content it describes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from ci_images.catalog.refs import Repository
from ci_images.errors import RegistryError, SigningError
from ci_images.log import log
from ci_images.oci import digest_tag, sha256_digest, short_digest
from ci_images.registry.client import RegistryClient
from ci_images.sign import dsse, keys
from ci_images.sign import payload as documents
from ci_images.sign import statement as statements
from ci_images.sign.payload import SIGNATURE_ANNOTATION, SIGNER_ANNOTATION, Layer
from ci_images.sign.signer import DigestLocks
from ci_images.sign.store import Signatures, append_signature, read_signatures

PREDICATE_TYPE_ANNOTATION = "predicateType"  # cmd/cosign/cli/attest/attest.go
DESCRIBES_ANNOTATION = "io.github.ci-images.describes"
ATTESTATION_SUFFIX = "att"  # pkg/oci/remote/options.go AttestationTagSuffix


def attestation_tag(digest: str) -> str:
    return digest_tag(digest, ATTESTATION_SUFFIX)


def new_layer(
    envelope_json: bytes, predicate_type: str, *, signer: str | None = None, describes: str | None = None
) -> Layer:
    annotations = {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type}
    if signer:
        annotations[SIGNER_ANNOTATION] = signer
    if describes:
        annotations[DESCRIBES_ANNOTATION] = describes
    return Layer(sha256_digest(envelope_json), len(envelope_json), dsse.ENVELOPE_MEDIA_TYPE, annotations)


@dataclass(frozen=True)
class Found:
    """One attestation layer of an ``.att`` tag and its blob (the envelope JSON, as the registry served it)."""

    layer: Layer
    blob: bytes

    @property
    def predicate_type(self) -> str:
        """What the layer's annotation says (unauthenticated)."""
        return self.layer.annotations.get(PREDICATE_TYPE_ANNOTATION, "")

    @property
    def describes(self) -> str | None:
        return self.layer.annotations.get(DESCRIBES_ANNOTATION)


@dataclass(frozen=True)
class Attestations:
    """What ``sha256-<hex>.att`` holds: the tag's manifest (as ``store.Signatures``) and its DSSE layers' blobs."""

    tag: str
    found: tuple[Found, ...] = ()
    manifest_digest: str | None = None
    layers: tuple[Layer, ...] = ()  # every layer of the tag, read or not

    @property
    def exists(self) -> bool:
        return self.manifest_digest is not None


def read_attestations(
    client: RegistryClient, repo: str, digest: str, *, wanted: Callable[[Layer], bool] | None = None
) -> Attestations:
    """The ``.att`` tag of ``digest`` with the blobs of its DSSE layers (those ``wanted`` picks by their descriptor:
    an SBOM can weigh megabytes), each checked against its digest by the client."""
    held: Signatures = read_signatures(client, repo, digest, tag=attestation_tag(digest))
    found = tuple(
        Found(layer, client.get_blob(repo, layer.digest))
        for layer in held.layers
        if layer.media_type == dsse.ENVELOPE_MEDIA_TYPE and (wanted is None or wanted(layer))
    )
    return Attestations(held.tag, found, held.manifest_digest, held.layers)


def statement_bytes(
    repository: Repository, digest: str, predicate_type: str, predicate: Mapping[str, Any]
) -> bytes:
    """The statement cosign's ``attest`` would make for ``repository@digest`` (``statement`` module)."""
    name = documents.docker_reference(repository)
    return statements.encode(statements.statement(name, digest, predicate_type, predicate))


def verified_statement(
    found: Found, public_key: ec.EllipticCurvePublicKey, digest: str, predicate_type: str
) -> statements.Statement | None:
    """The statement of ``found`` when it verifies with ``public_key``, has ``predicate_type`` and names
    ``digest``; None otherwise."""
    envelope = dsse.parse(found.blob)
    if envelope is None or envelope.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        return None
    if not dsse.verify(public_key, envelope):
        return None
    claim = statements.read(envelope.body)
    if claim is None or claim.predicate_type != predicate_type or not claim.names_digest(digest):
        return None
    return claim


@dataclass(frozen=True)
class Wanted:
    """One attestation a digest should carry. ``predicate`` is made only when it has to be written: a run that finds
    it there already reads nothing else (no upstream manifest, no syft scan)."""

    digest: str  # the subject
    predicate_type: str
    predicate: Callable[[], Mapping[str, Any]] = field(compare=False, repr=False)
    describes: str | None = None  # an index's SBOM: the platform manifest it is the SBOM of
    # Manifests with the same files as ``describes`` (sbom.SbomGenerator.same_files): an SBOM syft made from any of
    # them is this one's (keyless mode, which cannot annotate, recognises an index's SBOMs by what they scanned).
    same_files: frozenset[str] = frozenset()


KEY, KEYLESS = "key", "keyless"


@dataclass(frozen=True)
class AttestOutcome:
    """One attestation of one digest after this run: written now, or found already there."""

    digest: str
    predicate_type: str
    signer: str  # the key's fingerprint, or the keyless identity
    statement: str  # sha256 of the in-toto statement (the envelope's payload): what a consumer can recompute
    written: bool
    describes: str | None = None
    envelope: str | None = None  # key mode: the .att layer's digest (sha256 of the envelope JSON)
    mode: str = KEY

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "digest": self.digest,
            "predicate_type": self.predicate_type,
            "mode": self.mode,
            "signer": self.signer,
            "statement": self.statement,
            "envelope": self.envelope,
            "written": self.written,
        }
        if self.describes:
            record["describes"] = self.describes
        return record

    def lock_record(self) -> dict[str, str]:
        """How the lock file names this attestation: predicate type, statement digest, who signed it."""
        record = {"predicateType": self.predicate_type, "statement": self.statement}
        record.update({"key": self.signer} if self.mode == KEY else {"keyless": self.signer})
        if self.envelope:
            record["envelope"] = self.envelope
        if self.describes:
            record["describes"] = self.describes
        return record


class Attester(Protocol):
    """Attaches attestations signed like the images' signatures (a key, or keyless through cosign)."""

    mode: str
    signer: str

    def attest(self, client: RegistryClient, repository: Repository, wanted: Wanted) -> AttestOutcome:
        """``wanted`` on ``repository@wanted.digest``, unless an equivalent attestation by this signer is there."""
        ...


class KeyAttester:
    """Attests digests with a cosign key (the one that signs the images)."""

    mode = KEY

    def __init__(self, key: keys.SigningKey) -> None:
        self.key = key
        self.signer = key.fingerprint
        self._locks = DigestLocks()

    def attest(self, client: RegistryClient, repository: Repository, wanted: Wanted) -> AttestOutcome:
        """Attach ``wanted`` unless an equivalent attestation is there; read the tag back: it must list the new layer.
        SigningError (exit 9) when writing or that check fails."""
        digest, predicate_type, describes = wanted.digest, wanted.predicate_type, wanted.describes
        where = repository.with_digest(digest)
        with self._locks(repository, digest):
            try:
                existing = self._equivalent(client, repository, wanted)
                if existing is not None:
                    layer_digest, statement = existing
                    return AttestOutcome(
                        digest, predicate_type, self.signer, statement, False, describes, layer_digest
                    )
                body = statement_bytes(repository, digest, predicate_type, wanted.predicate())
                envelope = dsse.sign(self.key, body).to_json()
                layer = new_layer(envelope, predicate_type, signer=self.signer, describes=describes)
                append_signature(
                    client, repository.path, digest, envelope, layer, tag=attestation_tag(digest)
                )
                listed = read_signatures(client, repository.path, digest, tag=attestation_tag(digest)).layers
            except RegistryError as exc:
                raise SigningError(f"attesting {where}: {exc.message}", fix=exc.fix) from exc
        # The tag lists the envelope by its digest, which the registry checked against the bytes signed here: no
        # need to download megabytes of SBOM again to verify what was just signed.
        if not any(one.digest == layer.digest and one.annotations == layer.annotations for one in listed):
            raise SigningError(
                f"{where}: the {predicate_type} attestation just written is not in its .att tag, or does not verify",
                fix="check that nothing else writes the .att tags of this repository, and run again",
            )
        log.info(f"attested {where} ({predicate_type}) with key {short_digest(self.signer)}")
        return AttestOutcome(
            digest, predicate_type, self.signer, sha256_digest(body), True, describes, layer.digest
        )

    def _equivalent(
        self, client: RegistryClient, repository: Repository, wanted: Wanted
    ) -> tuple[str, str] | None:
        """(layer digest, statement digest) of an attestation by this key, of the wanted predicate type, naming the
        digest and describing the same platform; None when there is none."""

        def ours(layer: Layer) -> bool:
            # Cheap hints first (the annotations); the signature decides.
            annotations = layer.annotations
            return (
                annotations.get(PREDICATE_TYPE_ANNOTATION) == wanted.predicate_type
                and annotations.get(SIGNER_ANNOTATION) == self.signer
                and annotations.get(DESCRIBES_ANNOTATION) == wanted.describes
            )

        held = read_attestations(client, repository.path, wanted.digest, wanted=ours)
        for found in held.found:
            claim = verified_statement(found, self.key.public, wanted.digest, wanted.predicate_type)
            if claim is not None:
                return found.layer.digest, claim.statement_digest
        return None
