"""Pure helpers of the smoke probes: port settings, HEALTHCHECK parsing, image env, seed files."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from ci_images.smoke import kms, vault
from ci_images.smoke.common import env_value, healthcheck_argv
from ci_images.smoke.kms import seed_aliases

IMAGES = Path(__file__).resolve().parents[3] / "images"


@pytest.mark.parametrize(("probe", "image"), [(kms, "local-kms"), (vault, "vault")])
def test_the_probe_tests_the_port_the_shipped_image_exposes(probe: ModuleType, image: str) -> None:
    """The port a probe talks to is the one the image's Dockerfile declares (and its consumers publish)."""
    dockerfile = (IMAGES / image / "Dockerfile").read_text(encoding="utf-8")
    exposed = re.findall(r"^EXPOSE\s+(\d+)", dockerfile, flags=re.MULTILINE)
    assert exposed == [str(probe.CONTAINER_PORT)]


def test_kms_listens_on_port_from_env() -> None:
    assert kms.port_env(40123) == {"PORT": "40123"}
    assert kms.environment() == {}  # as SOPS starts it: no settings at all


def test_vault_dev_server_listens_on_loopback_only() -> None:
    assert vault.port_env(40123) == {"VAULT_DEV_LISTEN_ADDRESS": "127.0.0.1:40123"}


def test_vault_gets_only_a_fresh_root_token(secrets: set[str]) -> None:
    first, second = vault.environment(), vault.environment()
    assert set(first) == {"VAULT_DEV_ROOT_TOKEN_ID"}
    assert first != second
    assert first["VAULT_DEV_ROOT_TOKEN_ID"] in secrets  # never printed


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        (["CMD", "wget", "-q", "http://127.0.0.1:8200/"], ["wget", "-q", "http://127.0.0.1:8200/"]),
        (
            ["CMD-SHELL", "wget -q http://127.0.0.1:${PORT:-8080}/ || exit 1"],
            ["/bin/sh", "-c", "wget -q http://127.0.0.1:${PORT:-8080}/ || exit 1"],
        ),
        (["NONE"], None),
        ([], None),
        (None, None),
        (["CMD"], None),
    ],
)
def test_healthcheck_argv(test: list[str] | None, expected: list[str] | None) -> None:
    assert healthcheck_argv(test) == expected


def test_env_value_reads_image_env_list() -> None:
    env = ["PATH=/bin", "KMS_SEED_PATH=", "X=a=b"]
    assert env_value(env, "KMS_SEED_PATH") == ""
    assert env_value(env, "X") == "a=b"
    assert env_value(env, "MISSING") is None
    assert env_value(None, "PATH") is None


def test_committed_seed_file_has_the_documented_alias() -> None:
    aliases = seed_aliases((IMAGES / "local-kms" / "seeds" / "sops-test.yaml").read_text(encoding="utf-8"))
    assert aliases == {"alias/sops-test": "b4e02789-6a52-4a3e-a60c-d48a687a772c"}


def test_seed_aliases_ignores_incomplete_entries() -> None:
    text = "Aliases:\n  - AliasName: alias/a\n    TargetKeyId: k1\n  - AliasName: alias/b\n"
    assert seed_aliases(text) == {"alias/a": "k1"}
    assert seed_aliases("") == {}
    with pytest.raises(TypeError):
        seed_aliases("- just\n- a list\n")
