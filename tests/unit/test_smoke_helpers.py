"""Pure helpers of the smoke probes: port settings, HEALTHCHECK parsing, image env, seed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_images.smoke.probe import (
    CONTAINER_PORTS,
    PORT_ENV,
    SMOKE_KINDS,
    env_value,
    healthcheck_argv,
    kms_port_env,
    seed_aliases,
    vault_port_env,
)

IMAGES = Path(__file__).resolve().parents[2] / "images"


def test_every_kind_has_a_port_and_a_port_setting() -> None:
    assert set(CONTAINER_PORTS) == set(PORT_ENV) == SMOKE_KINDS
    assert CONTAINER_PORTS == {"kms": 8080, "vault": 8200}


def test_kms_listens_on_port_from_env() -> None:
    assert kms_port_env(40123) == {"PORT": "40123"}


def test_vault_dev_server_listens_on_loopback_only() -> None:
    assert vault_port_env(40123) == {"VAULT_DEV_LISTEN_ADDRESS": "127.0.0.1:40123"}


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
