"""The .att layer and manifest, as cosign attest lays them out."""

from __future__ import annotations

import json

from ci_images.oci import go_json, sha256_digest
from ci_images.sign import attest, dsse, keys
from ci_images.sign import payload as documents
from ci_images.sign import statement as statements
from tests.unit.sign.attestation_inputs import DIGEST


def test_att_layer_and_manifest_are_cosigns(ours: keys.SigningKey) -> None:
    assert attest.attestation_tag(DIGEST) == "sha256-" + "ab" * 32 + ".att"
    envelope = dsse.sign(ours, b"{}").to_json()
    layer = attest.new_layer(envelope, statements.SLSA_PROVENANCE_V1, signer=ours.fingerprint)
    assert layer.descriptor() == {
        "mediaType": "application/vnd.dsse.envelope.v1+json",
        "size": len(envelope),
        "digest": sha256_digest(envelope),
        "annotations": {
            "dev.cosignproject.cosign/signature": "",
            "io.github.ci-images.signer": ours.fingerprint,
            "predicateType": "https://slsa.dev/provenance/v1",
        },
    }
    config = go_json(documents.append_to_config(documents.empty_config(), layer))
    manifest = json.loads(documents.signature_manifest(config, [layer]))
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["layers"] == [layer.descriptor()]
