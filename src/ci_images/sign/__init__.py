"""Signing adapter: cosign-compatible signatures for the digests the target holds.

Key mode is done here, byte for byte in cosign's formats, because cosign is not installable on every machine:
``keys`` (cosign's encrypted key file), ``payload`` (the simplesigning payload and the ``.sig`` manifest),
``store`` (reading and writing ``sha256-<hex>.sig`` through the one registry client), ``verify`` (one digest against
one public key). Keyless mode goes through the cosign CLI (``keyless``), run by ``ci_images.proc``. ``signer`` puts
both behind one interface for ``run/`` and ``commands/``.

Attestations (``cosign attest`` / ``verify-attestation``): ``dsse`` (envelopes, PAE), ``statement`` (in-toto),
``provenance`` (SLSA v1 predicates), ``sbom`` (syft's SPDX JSON), ``attest`` (the ``.att`` tag and ``KeyAttester``),
``attest_verify`` (the checks), ``keyless_attest`` (``cosign attest`` and ``verify-attestation``), ``attach`` (what an
image gets and what verify-images checks, over all its digests).
"""
