"""Smoke probes declared in the catalog: the forms `smoke:` takes, the model and its records, and every mistake
reported at its file:line:column with a fix."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci_images.catalog.load import load_catalog
from ci_images.catalog.probes import (
    CommandProbe,
    HealthcheckProbe,
    HttpProbe,
    LogProbe,
    NamedProbe,
    SmokeSpec,
    TcpProbe,
    named_smoke,
)
from ci_images.errors import CatalogError
from ci_images.smoke import KINDS
from tests.unit.conftest import CatalogFiles

HEAD = 'images:\n  demo:\n    source: acme/demo\n    versions: ["1.0.0"]\n'  # the smoke: key starts on line 5


def load_smoke(catalog_files: CatalogFiles, smoke: str, known: tuple[str, ...] = KINDS) -> SmokeSpec | None:
    path = catalog_files.write(HEAD + textwrap.indent(textwrap.dedent(smoke).strip("\n"), "    ") + "\n")
    return load_catalog(path, smoke_kinds=known).images[0].variants[0].smoke


FULL = """
smoke:
  port: 6379
  port_env: {LISTEN: "127.0.0.1:{port}"}
  env: {DEMO_MODE: test}
  timeout: 60
  probes:
    - healthcheck
    - tcp
    - http: {path: /health, status: 204, body: "^ok$", timeout: 5}
    - log: "Ready to accept connections"
    - log: {pattern: "listening", timeout: 7.5}
    - command:
        image: docker.io/library/redis:7.2
        argv: [sh, -c, 'redis-cli -h "$SERVICE_HOST" -p "$SERVICE_PORT" ping']
        env: {REDISCLI_AUTH: x}
    - kms
    - plugin: my-probe
    - plugin: {name: other, timeout: 9}
"""


def test_every_probe_type_parses_into_the_frozen_model(catalog_files: CatalogFiles) -> None:
    spec = load_smoke(catalog_files, FULL)
    assert spec == SmokeSpec(
        probes=(
            HealthcheckProbe(60.0),
            TcpProbe(None, 60.0),
            HttpProbe(None, "/health", 204, "^ok$", 5.0),
            LogProbe("Ready to accept connections", 60.0),
            LogProbe("listening", 7.5),
            CommandProbe(
                "docker.io/library/redis:7.2",
                ("sh", "-c", 'redis-cli -h "$SERVICE_HOST" -p "$SERVICE_PORT" ping'),
                {"REDISCLI_AUTH": "x"},
                60.0,
            ),
            NamedProbe("kms", plugin=False, timeout_s=60.0),
            NamedProbe("my-probe", plugin=True, timeout_s=60.0),
            NamedProbe("other", plugin=True, timeout_s=9.0),
        ),
        port=6379,
        port_env={"LISTEN": "127.0.0.1:{port}"},
        env={"DEMO_MODE": "test"},
        timeout_s=60.0,
    )
    assert spec.port_env == {"LISTEN": "127.0.0.1:{port}"} and spec.env == {"DEMO_MODE": "test"}
    assert str(spec) == "healthcheck, tcp, http, log, log, command, kms, my-probe, other"
    assert spec.ports == (6379,)


def test_as_record_shows_every_probe_for_list_images(catalog_files: CatalogFiles) -> None:
    spec = load_smoke(catalog_files, FULL)
    assert spec is not None
    record = spec.as_record()
    assert {k: v for k, v in record.items() if k != "probes"} == {
        "port": 6379,
        "port_env": {"LISTEN": "127.0.0.1:{port}"},
        "env": {"DEMO_MODE": "test"},
        "timeout": 60.0,
    }
    assert record["probes"] == [
        {"type": "healthcheck", "timeout": 60.0},
        {"type": "tcp", "port": None, "timeout": 60.0},
        {"type": "http", "port": None, "path": "/health", "status": 204, "body": "^ok$", "timeout": 5.0},
        {"type": "log", "pattern": "Ready to accept connections", "timeout": 60.0},
        {"type": "log", "pattern": "listening", "timeout": 7.5},
        {
            "type": "command",
            "image": "docker.io/library/redis:7.2",
            "argv": ["sh", "-c", 'redis-cli -h "$SERVICE_HOST" -p "$SERVICE_PORT" ping'],
            "env": {"REDISCLI_AUTH": "x"},
            "timeout": 60.0,
        },
        {"type": "named", "name": "kms", "timeout": 60.0},
        {"type": "plugin", "name": "my-probe", "timeout": 60.0},
        {"type": "plugin", "name": "other", "timeout": 9.0},
    ]


def test_a_name_is_the_shorthand_of_one_named_probe(catalog_files: CatalogFiles) -> None:
    assert load_smoke(catalog_files, "smoke: vault") == named_smoke("vault")
    assert str(named_smoke("vault")) == "vault"
    assert load_smoke(catalog_files, "smoke: null") is None
    # An installed plugin's name works like a built-in's; `plugin:` works whether or not it is installed here.
    assert load_smoke(catalog_files, "smoke: redis", known=(*KINDS, "redis")) == named_smoke("redis")


def test_a_list_is_probes_with_default_settings(catalog_files: CatalogFiles) -> None:
    spec = load_smoke(catalog_files, "smoke: [healthcheck, {tcp: {port: 5432}}, {http: {port: 8080}}]")
    assert spec == SmokeSpec(
        probes=(HealthcheckProbe(180.0), TcpProbe(5432, 180.0), HttpProbe(8080, "/", 200, None, 180.0))
    )
    assert spec.ports == (5432, 8080)


def test_a_variant_declares_its_own_probes(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        HEAD
        + "    build: img\n    smoke: vault\n    variants:\n"
        + "      tls:\n        smoke: {port: 8200, probes: [{http: {path: /v1/sys/health}}]}\n",
        build_folders=["img"],
    )
    plain, tls = load_catalog(path, smoke_kinds=KINDS).images[0].variants
    assert plain.smoke == named_smoke("vault")
    assert tls.smoke == SmokeSpec(probes=(HttpProbe(None, "/v1/sys/health", 200, None, 180.0),), port=8200)


@dataclass(frozen=True)
class Bad:
    smoke: str  # indented under the image; its first line is line 5
    line: int
    column: int
    message: str
    fix: str


BAD: dict[str, Bad] = {
    "unknown name": Bad("smoke: redis", 5, 12, "unknown smoke kind 'redis'", "`plugin: redis`"),
    "unknown name in a list": Bad(
        "smoke: [healthcheck, redis]", 5, 26, "unknown smoke probe 'redis'", "healthcheck, tcp, http"
    ),
    "log without a pattern": Bad("smoke: [log]", 5, 13, "a log probe needs settings", "log: PATTERN"),
    "log as the shorthand": Bad("smoke: log", 5, 12, "a log probe needs settings", "log: PATTERN"),
    "bad log pattern": Bad(
        "smoke:\n  port: 80\n  probes:\n    - log: 'ready ('\n",
        8,
        16,
        "bad regular expression 'ready (': missing ), unterminated subpattern",
        "Python regular expression",
    ),
    "bad body pattern": Bad(
        "smoke:\n  port: 80\n  probes:\n    - http:\n        body: '[a-'\n",
        9,
        19,
        "bad regular expression '[a-'",
        "Python regular expression",
    ),
    "http path without a slash": Bad(
        "smoke: [{http: {port: 80, path: health}}]",
        5,
        37,
        "http path 'health' does not start with '/'",
        "/health",
    ),
    "two types in one probe": Bad(
        "smoke:\n  port: 80\n  probes:\n    - tcp: {}\n      http: {}\n",
        9,
        11,
        "names 2 probe types (http, tcp); a probe has one",
        "its own list item",
    ),
    "misspelt option": Bad(
        "smoke: [{http: {port: 80, stauts: 204}}]", 5, 31, "unknown key 'stauts'", "path, port, status"
    ),
    "status out of range": Bad(
        "smoke: [{http: {port: 80, status: 99}}]",
        5,
        39,
        "99 is less than the minimum of 100",
        "catalog reference",
    ),
    "port out of range": Bad(
        "smoke: {port: 70000, probes: [tcp]}", 5, 19, "70000 is greater than", "reference"
    ),
    "zero timeout": Bad(
        "smoke: {timeout: 0, probes: [healthcheck]}", 5, 22, "less than or equal to", "reference"
    ),
    "port_env without the placeholder": Bad(
        "smoke: {port: 80, port_env: {PORT: '80'}, probes: [tcp]}",
        5,
        40,
        "port_env PORT='80' does not contain {port}",
        'PORT: "{port}"',
    ),
    "port_env without port": Bad(
        "smoke: {port_env: {PORT: '{port}'}, probes: [healthcheck]}",
        5,
        13,
        "port_env without port",
        "add `port: N`",
    ),
    "tcp with no port to reach": Bad(
        "smoke: [healthcheck, tcp]", 5, 26, "the tcp probe has no port to reach", "add `port: N`"
    ),
    "command with no port to tell": Bad(
        "smoke: [{command: {image: busybox, argv: ['true']}}]",
        5,
        13,
        "the command probe has no port to reach",
        "add `port: N`",
    ),
    "command without argv": Bad(
        "smoke: {port: 80, probes: [{command: {image: busybox}}]}",
        5,
        42,
        "is missing the required key 'argv'",
        "add 'argv:'",
    ),
    "bad client image": Bad(
        "smoke: {port: 80, probes: [{command: {image: 'Bad Image', argv: ['true']}}]}",
        5,
        50,
        "bad client image reference 'Bad Image'",
        "NAME@sha256:DIGEST",
    ),
    "bad env name": Bad(
        "smoke: {port: 80, env: {1X: y}, probes: [tcp]}", 5, 29, "invalid name '1X'", "variable names"
    ),
    "env value not a string": Bad(
        "smoke: {port: 80, env: {X: 1}, probes: [tcp]}", 5, 32, "must be a string", 'quote it: "1"'
    ),
    "bad plugin name": Bad(
        "smoke: [{plugin: 'my probe'}]", 5, 22, "bad plugin name 'my probe'", "entry point"
    ),
    "empty probe list": Bad("smoke: {probes: []}", 5, 21, "must not be empty", "at least one"),
    "mapping without probes": Bad("smoke: {port: 80}", 5, 12, "missing the required key 'probes'", "probes:"),
    "a number": Bad("smoke: 5", 5, 12, "images.demo.smoke must be a string, not an integer 5", "quote it"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=list(BAD))
def test_bad_probes_are_reported_at_file_line_column_with_a_fix(
    case: Bad, catalog_files: CatalogFiles
) -> None:
    with pytest.raises(CatalogError) as info:
        load_smoke(catalog_files, case.smoke)
    error = info.value
    assert error.exit_code == 2
    assert (error.line, error.column) == (case.line, case.column), error.render()
    assert case.message in error.message, error.render()
    assert error.fix is not None and case.fix in error.fix, error.render()
    assert error.render().startswith(f"{error.path}:{case.line}:{case.column}: ")


def test_readme_shows_the_shipped_example_and_it_loads() -> None:
    """README's "Adding an image" is examples/demo-service as shipped (tests/integration/test_push_probes.py pushes
    it): both files appear in README word for word, and the catalog loads with its five probe types."""
    root = Path(__file__).resolve().parents[3]
    readme = root.joinpath("README.md").read_text("utf-8")
    example = root / "examples" / "demo-service"
    for file in (example / "images" / "demo-service" / "Dockerfile", example / "images.yaml"):
        shown = textwrap.indent(file.read_text("utf-8").rstrip(), "   ", lambda line: bool(line.strip()))
        assert shown in readme, f"README's example differs from {file.relative_to(root)}"
    (spec,) = load_catalog(example / "images.yaml", smoke_kinds=KINDS).images
    assert spec.smoke is not None
    assert [p.type for p in spec.smoke.probes] == ["healthcheck", "tcp", "http", "log", "command"]
