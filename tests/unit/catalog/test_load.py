"""Catalog loading and validation: every mistake is reported with file:line:column, what is wrong, and a fix."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ci_images.catalog import load as catalog
from ci_images.catalog.checks import check_dockerfile
from ci_images.catalog.load import load_catalog
from ci_images.catalog.model import ALL_PLATFORMS
from ci_images.catalog.probes import named_smoke
from ci_images.catalog.refs import Repository
from ci_images.catalog.yamlmarks import load_marked
from ci_images.errors import CatalogError, UsageError
from ci_images.smoke import KINDS
from tests.unit.conftest import CatalogFiles

MAIN = Path(__file__).resolve().parents[3]

GOOD = """
registry: ghcr.io/acme/ci
platforms: [linux/amd64, linux/arm64]
images:
  local-kms:
    title: KMS
    description: kms for tests
    source: docker.io/nsmithuk/local-kms
    versions: ["3.11.7", "3.12.0"]
    build: img
    smoke: kms
    build_args: {PORT: "8080"}
    variants:
      seeded:
        description: seeded kms
        build_args: {KMS_SEED: sops-test}
  mirror:
    source: quay.io/acme/tool
    versions: ["1.0"]
    platforms: [linux/amd64]
    tags: ["{version}"]
"""


def test_good_catalog_loads_into_frozen_dataclasses(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(GOOD, build_folders=["img"])
    loaded = load_catalog(path, smoke_kinds=KINDS)
    assert loaded.registry == "ghcr.io/acme/ci"
    assert loaded.platforms == ("linux/amd64", "linux/arm64")
    assert loaded.lock_file == path.parent / "images.lock.json"
    assert loaded.ratelimit_min_remaining == 10
    kms, mirror = loaded.images
    assert kms.mode == "build"
    assert kms.source == Repository("docker.io", "nsmithuk/local-kms")
    assert kms.versions == ("3.11.7", "3.12.0")
    assert kms.build == (path.parent / "img").resolve()
    assert kms.dockerfile == (path.parent / "img" / "Dockerfile").resolve()
    assert kms.tag_templates == ("{version}", "{major}.{minor}", "latest")
    assert [v.name for v in kms.variants] == ["plain", "seeded"]
    assert kms.variants[0].build_args == {"PORT": "8080"}
    assert kms.variants[1].build_args == {"PORT": "8080", "KMS_SEED": "sops-test"}
    assert kms.variants[1].smoke == named_smoke("kms")
    assert kms.variants[1].description == "seeded kms"
    assert mirror.mode == "mirror"
    assert mirror.build is None and mirror.dockerfile is None
    assert mirror.platforms == ("linux/amd64",)
    assert mirror.title == "mirror"
    with pytest.raises(AttributeError):
        kms.name = "other"  # type: ignore[misc]


def test_shipped_catalog_is_valid() -> None:
    loaded = load_catalog(MAIN / "images.yaml", smoke_kinds=KINDS)
    names = [spec.name for spec in loaded.images]
    assert names == ["local-kms", "vault", "local-kms-upstream", "vault-upstream"]
    for spec in loaded.images:
        if spec.mode == "build":
            assert spec.dockerfile is not None
            assert check_dockerfile(spec.dockerfile) is None
        else:  # digest-exact mirrors keep upstream's repository path and every platform upstream has
            assert spec.target == f"mirror/{spec.source.path}"
            assert spec.platforms == ALL_PLATFORMS
            assert spec.tag_templates == ("{version}",)


def test_variant_smoke_null_disables_the_smoke_test(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        """
        images:
          kms:
            source: nsmithuk/local-kms
            versions: ["1.0.0"]
            build: img
            smoke: kms
            variants:
              quiet: {smoke: null}
              bare:
        """,
        build_folders=["img"],
    )
    spec = load_catalog(path, smoke_kinds=KINDS).images[0]
    kms = named_smoke("kms")
    assert [(v.name, v.smoke) for v in spec.variants] == [("plain", kms), ("quiet", None), ("bare", kms)]


def test_yaml_merge_keys_may_override_merged_values(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        """
        images:
          one: &base
            source: acme/tool
            versions: ["1.0.0"]
          two:
            <<: *base
            versions: ["2.0.0"]
        """
    )
    one, two = load_catalog(path, smoke_kinds=KINDS).images
    assert one.versions == ("1.0.0",)
    assert two.versions == ("2.0.0",)
    assert two.source == one.source


def test_per_version_source_and_platforms(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        """
        platforms: [linux/amd64, linux/arm64]
        images:
          vault:
            source: docker.io/hashicorp/vault
            versions:
              - version: "1.10.0"
                source: docker.io/vault
                platforms: [linux/amd64]
              - "1.14.10"
              - {version: "2.0.0", platforms: [linux/arm64]}
            build: img
        """,
        build_folders=["img"],
    )
    spec = load_catalog(path, smoke_kinds=KINDS).images[0]
    assert spec.versions == ("1.10.0", "1.14.10", "2.0.0")
    old, middle, new = spec.releases
    assert (old.source, old.platforms) == (Repository("docker.io", "library/vault"), ("linux/amd64",))
    assert (middle.source, middle.platforms) == (spec.source, ("linux/amd64", "linux/arm64"))
    assert (new.source, new.platforms) == (spec.source, ("linux/arm64",))
    assert spec.release("1.10.0") is old
    assert spec.target == "vault"


def test_mirror_with_target_path_and_all_platforms(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        """
        images:
          local-kms-upstream:
            source: docker.io/nsmithuk/local-kms
            target: mirror/nsmithuk/local-kms
            versions: ["3.11.1", {version: "3.11.0", platforms: [linux/amd64]}]
            platforms: all
            tags: ["{version}"]
          local-kms:
            source: docker.io/nsmithuk/local-kms
            versions: ["3.11.1"]
            tags: ["{version}"]
        """
    )
    mirror, plain = load_catalog(path, smoke_kinds=KINDS).images
    assert mirror.target == "mirror/nsmithuk/local-kms"
    assert mirror.platforms == ALL_PLATFORMS
    assert [r.platforms for r in mirror.releases] == [ALL_PLATFORMS, ("linux/amd64",)]
    assert plain.target == "local-kms"  # the same tag 3.11.1 in another repository: no collision


def test_catalog_path_precedence() -> None:
    env = {catalog.CATALOG_ENV: "from-env.yaml"}
    assert catalog.catalog_path("explicit.yaml", env) == Path("explicit.yaml")
    assert catalog.catalog_path(None, env) == Path("from-env.yaml")
    assert catalog.catalog_path(None, {}) == Path("images.yaml")


def test_missing_catalog_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_catalog(tmp_path / "nope.yaml", smoke_kinds=KINDS)
    assert info.value.exit_code == 2
    assert "not found" in info.value.message
    assert info.value.fix is not None and catalog.CATALOG_ENV in info.value.fix


def test_every_smoke_kind_has_one_probe_module() -> None:
    from ci_images.smoke.probe import probe_module

    for kind in KINDS:
        module = probe_module(kind)
        assert module.__name__ == f"ci_images.smoke.{kind}"
        assert isinstance(module.CONTAINER_PORT, int)
        assert callable(module.port_env) and callable(module.environment) and callable(module.probe)
    with pytest.raises(UsageError, match="unknown smoke test kind"):
        probe_module("redis")


def test_loading_a_catalog_does_not_import_the_smoke_clients() -> None:
    script = (
        "import sys; from ci_images.catalog.load import load_catalog; from ci_images.smoke import KINDS; "
        "load_catalog(sys.argv[1], smoke_kinds=KINDS); "
        "print(sorted(m for m in ('boto3', 'hvac', 'docker', 'requests', 'ci_images.smoke.probe') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(MAIN / "images.yaml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "[]"


def test_registry_local_and_target_repository(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write("registry: local\n" + ONE)
    assert load_catalog(path, smoke_kinds=KINDS).registry == "local"
    assert str(catalog.target_repository("ghcr.io/acme/ci/", "vault")) == "ghcr.io/acme/ci/vault"
    with pytest.raises(UsageError, match="bad target registry"):
        catalog.target_repository("ghcr.io/Acme", "vault")


@dataclass(frozen=True)
class Bad:
    """A bad catalog and exactly where and how it must be reported."""

    text: str
    line: int | None
    column: int | None
    message: str
    fix: str
    folders: dict[str, str] = field(default_factory=dict)  # build folder -> Dockerfile text


ONE = 'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0"]\n'
ARG_FROM = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"

BAD: dict[str, Bad] = {
    "yaml syntax": Bad(
        'images:\n  a:\n    source: "acme/a\n    versions: [1\n',
        5,
        1,
        "YAML syntax error: found unexpected end of stream (while scanning a quoted scalar that starts at "
        "line 3, column 13)",
        "quoting",
    ),
    "unclosed flow mapping": Bad(
        'images:\n  a: {source: acme/a, versions: ["1.0.0"]\n  b: 1\n',
        3,
        3,
        "(while parsing a flow mapping that starts at line 2, column 6)",
        "indentation",
    ),
    "tab indentation": Bad(
        "images:\n\ta: {}\n",
        2,
        1,
        "YAML syntax error: found character '\\t' that cannot start",
        "indentation",
    ),
    "duplicate yaml key": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0"]\n    source: acme/b\n',
        5,
        5,
        "duplicate key 'source' (first defined on line 3)",
        "remove or merge",
    ),
    "duplicate image": Bad(
        ONE + '  a:\n    source: acme/b\n    versions: ["2.0.0"]\n', 5, 3, "duplicate key 'a'", "remove"
    ),
    "not a mapping": Bad("- a\n- b\n", 1, 1, "must be a mapping with an 'images' key", "README"),
    "empty file": Bad("", None, None, "must be a mapping with an 'images' key", "README"),
    "unknown top-level key": Bad(
        ONE + "regsitry: ghcr.io/a/b\n", 5, 1, "unknown key 'regsitry' in (top level)", "registry"
    ),
    "unknown image key": Bad(
        ONE + "    smoek: kms\n", 5, 5, "unknown key 'smoek' in images.a", "allowed keys here: build"
    ),
    "unknown variant key": Bad(
        ONE + "    build: img\n    variants:\n      s:\n        buildargs: {}\n",
        8,
        9,
        "unknown key 'buildargs' in images.a.variants.s",
        "build_args",
        {"img": ARG_FROM},
    ),
    "missing source": Bad(
        'images:\n  a:\n    versions: ["1.0.0"]\n',
        3,
        5,
        "images.a is missing the required key 'source'",
        "source",
    ),
    "unquoted 1.10 read as float": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.9.0", 1.10]\n',
        4,
        25,
        "images.a.versions[1] must be a string, not a number 1.1",
        'quote it: "1.10" (YAML reads 1.10 unquoted as 1.1)',
    ),
    "unquoted 1.10 in block list": Bad(
        'images:\n  a:\n    source: acme/a\n    versions:\n      - "1.9.0"\n      - 1.10\n',
        6,
        9,
        "images.a.versions[1] must be a string, not a number 1.1",
        'quote it: "1.10" (YAML reads 1.10 unquoted as 1.1)',
    ),
    "versions not a list": Bad(
        "images:\n  a:\n    source: acme/a\n    versions: 1.0.0\n",
        4,
        15,
        "images.a.versions must be a list, not a string '1.0.0'",
        "write a list here",
    ),
    "image is null": Bad("images:\n  a:\n", 2, 5, "images.a must be a mapping, not null", "mapping"),
    "bool title": Bad(ONE + "    title: yes\n", 5, 12, "images.a.title must be a string", 'quote it: "yes"'),
    "build arg not a string": Bad(
        ONE + "    build: img\n    build_args: {PORT: 8080}\n",
        6,
        24,
        "images.a.build_args.PORT must be a string, not an integer 8080",
        'quote it: "8080"',
        {"img": ARG_FROM},
    ),
    "empty versions": Bad(
        "images:\n  a:\n    source: acme/a\n    versions: []\n",
        4,
        15,
        "images.a.versions must not be empty",
        "at least one value",
    ),
    "no images": Bad("images: {}\n", 1, 9, "images must not be empty", "at least one"),
    "bad version": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0", "1.0 beta"]\n',
        4,
        25,
        "bad version '1.0 beta': not a valid image tag",
        "letters, digits",
    ),
    "version not semver for {major}.{minor}": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["stable"]\n',
        4,
        16,
        "bad version 'stable': the tag templates need MAJOR.MINOR[.PATCH]",
        "drop {major}/{minor}/{patch}",
    ),
    "version twice": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0", "1.0.0"]\n',
        4,
        25,
        "version '1.0.0' is listed twice",
        "remove the duplicate",
    ),
    "missing build folder": Bad(
        ONE + "    build: images/nope\n",
        5,
        12,
        "build folder 'images/nope' does not exist",
        "create it with a Dockerfile",
    ),
    "missing Dockerfile": Bad(
        ONE + "    build: img\n    dockerfile: Containerfile\n",
        6,
        17,
        "no Dockerfile at",
        "set 'dockerfile:'",
        {"img": ARG_FROM},
    ),
    "Dockerfile outside the build folder": Bad(
        ONE + "    build: img\n    dockerfile: ../Dockerfile\n",
        6,
        17,
        "outside the build folder",
        "move the Dockerfile into the build folder",
        {"img": ARG_FROM},
    ),
    "dockerfile without build": Bad(
        ONE + "    dockerfile: Dockerfile\n", 5, 5, "'dockerfile' without 'build'", "add 'build: FOLDER'"
    ),
    "build_args on a mirrored image": Bad(
        ONE + "    build_args: {A: b}\n", 5, 5, "'build_args' without 'build'", "remove 'build_args'"
    ),
    "Dockerfile without ARG BASE_IMAGE": Bad(
        ONE + "    build: img\n",
        5,
        12,
        "Dockerfile:1: FROM comes before 'ARG BASE_IMAGE'",
        "start it with 'ARG BASE_IMAGE' then 'FROM ${BASE_IMAGE}'",
        {"img": "FROM alpine:3.20\nRUN true\n"},
    ),
    "Dockerfile FROM a fixed image": Bad(
        ONE + "    build: img\n",
        5,
        12,
        "the first FROM must be FROM ${BASE_IMAGE}, not alpine",
        "ARG BASE_IMAGE",
        {"img": "# comment\nARG BASE_IMAGE\nFROM alpine\n"},
    ),
    "Dockerfile without FROM": Bad(
        ONE + "    build: img\n",
        5,
        12,
        "no 'ARG BASE_IMAGE' followed by 'FROM ${BASE_IMAGE}'",
        "ARG BASE_IMAGE",
        {"img": "ARG BASE_IMAGE\n"},
    ),
    "variant on a mirrored image": Bad(
        ONE + "    variants:\n      seeded: {}\n",
        6,
        7,
        "variants need 'build': a mirrored image has no build args",
        "remove 'variants'",
    ),
    "variant named plain": Bad(
        ONE + "    build: img\n    variants:\n      plain: {}\n",
        7,
        7,
        "variant name 'plain' is reserved",
        "pick another name",
        {"img": ARG_FROM},
    ),
    "unknown smoke kind": Bad(
        ONE + "    smoke: kmz\n", 5, 12, "unknown smoke kind 'kmz'", "use one of: kms, vault"
    ),
    "unknown variant smoke kind": Bad(
        ONE + "    build: img\n    variants:\n      s:\n        smoke: valt\n",
        8,
        16,
        "unknown smoke kind 'valt'",
        "kms, vault",
        {"img": ARG_FROM},
    ),
    "bad top-level platform": Bad(
        "platforms: [linux/amd64, linux/arm65]\n" + ONE,
        1,
        26,
        "bad platform 'linux/arm65'",
        "OS/ARCH[/VARIANT]",
    ),
    "bad image platform": Bad(
        ONE + "    platforms:\n      - linux/amd64\n      - windows/amd64\n",
        7,
        9,
        "bad platform 'windows/amd64'",
        "linux/arm/v7",
    ),
    "bad platform variant": Bad(
        ONE + "    platforms: [linux/arm/7]\n", 5, 17, "bad platform 'linux/arm/7'", "linux/arm/v7"
    ),
    "platform twice": Bad(
        ONE + "    platforms: [linux/amd64, linux/amd64]\n",
        5,
        16,
        "images.a.platforms lists a value twice",
        "remove the duplicate",
    ),
    "duplicate target tag from {version} and an alias": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.2", "1.2.3"]\n',
        4,
        23,
        "target tag a:1.2 is produced twice: by a/plain/1.2.3 and by a/plain/1.2",
        "make every tag template contain {version}",
    ),
    "duplicate target tag from a variant suffix": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0", "1.0.0-seeded"]\n'
        "    build: img\n    variants:\n      seeded: {}\n",
        4,
        16,
        "target tag a:1.0.0-seeded is produced twice: by a/seeded/1.0.0 and by a/plain/1.0.0-seeded",
        "remove the duplicate version or variant",
        {"img": ARG_FROM},
    ),
    "version that gets no tag": Bad(
        'tags: ["{major}.{minor}"]\nimages:\n  a:\n    source: acme/a\n    versions: ["1.0.0", "1.1.0-rc1"]\n',
        5,
        25,
        "version '1.1.0-rc1' of a gets no tag",
        "add '{version}' to the tags",
    ),
    "unknown tag template field": Bad(
        'tags: ["{version}", "{build}"]\n' + ONE,
        1,
        21,
        "tag template '{build}' uses unknown field(s) ['build']",
        "{major}",
    ),
    "format spec in tag template": Bad(
        ONE + '    tags: ["{version!r}"]\n', 5, 12, "bad tag template", "{version}"
    ),
    "tag template giving an invalid tag": Bad(
        ONE + '    tags: ["v {version}"]\n', 5, 12, "does not give a valid tag", "letters, digits"
    ),
    "bad source": Bad(
        'images:\n  a:\n    source: docker.io/Acme/A\n    versions: ["1.0.0"]\n',
        3,
        13,
        "bad source 'docker.io/Acme/A'",
        "[HOST/]NAMESPACE/NAME",
    ),
    "source with a tag": Bad(
        'images:\n  a:\n    source: acme/a:1.0\n    versions: ["1.0.0"]\n',
        3,
        13,
        "must not carry a tag",
        "NAMESPACE/NAME",
    ),
    "bad image name": Bad(
        'images:\n  Local_KMS:\n    source: acme/a\n    versions: ["1.0.0"]\n',
        2,
        3,
        "invalid name 'Local_KMS' in images",
        "lowercase letters",
    ),
    "bad build arg name": Bad(
        ONE + "    build: img\n    build_args:\n      1X: a\n",
        7,
        7,
        "invalid name '1X' in images.a.build_args",
        "build arg names",
        {"img": ARG_FROM},
    ),
    "non-string key": Bad(ONE + "    1: x\n", 5, 5, "mapping key 1 is a int", 'quote the key: "1":'),
    "bad upstream_mirror": Bad(
        "upstream_mirror: https://mirror.test/v2/\n" + ONE,
        1,
        18,
        "upstream_mirror: 'https://mirror.test/v2/' is not host[:port]",
        "host[:port]",
    ),
    "bad registry": Bad(
        "registry: ghcr.io:99999/acme\n" + ONE, 1, 11, "bad registry 'ghcr.io:99999/acme'", "HOST[:PORT]/PATH"
    ),
    "version mapping without version": Bad(
        "images:\n  a:\n    source: acme/a\n    versions:\n      - source: acme/b\n",
        5,
        9,
        "images.a.versions[0] is missing the required key 'version'",
        "add 'version:'",
    ),
    "unknown per-version key": Bad(
        'images:\n  a:\n    source: acme/a\n    versions:\n      - version: "1.0.0"\n        platfroms: []\n',
        6,
        9,
        "unknown key 'platfroms' in images.a.versions[0]",
        "allowed keys here: platforms, source, version",
    ),
    "unquoted version inside a version mapping": Bad(
        "images:\n  a:\n    source: acme/a\n    versions:\n      - {version: 1.10}\n",
        5,
        19,
        "images.a.versions[0].version must be a string, not a number 1.1",
        'quote it: "1.10"',
    ),
    "bad per-version source": Bad(
        'images:\n  a:\n    source: acme/a\n    versions:\n      - {version: "1.0.0", source: Acme/B}\n',
        5,
        36,
        "bad source 'Acme/B'",
        "[HOST/]NAMESPACE/NAME",
    ),
    "bad per-version platform": Bad(
        'images:\n  a:\n    source: acme/a\n    versions:\n      - version: "1.0.0"\n'
        "        platforms: [linux/amd64, linux/x86]\n",
        6,
        34,
        "bad platform 'linux/x86'",
        "OS/ARCH[/VARIANT]",
    ),
    "version twice, once as a mapping": Bad(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0", {version: "1.0.0"}]\n',
        4,
        35,
        "version '1.0.0' is listed twice",
        "remove the duplicate",
    ),
    "platforms all on a build": Bad(
        ONE + "    build: img\n    platforms: all\n",
        6,
        16,
        "platforms: all is for mirrored images only",
        "list the platforms to build",
        {"img": ARG_FROM},
    ),
    "per-version platforms all on a build": Bad(
        'images:\n  a:\n    source: acme/a\n    build: img\n    versions:\n      - {version: "1.0.0", platforms: all}\n',
        6,
        39,
        "platforms: all is for mirrored images only",
        "list the platforms to build",
        {"img": ARG_FROM},
    ),
    "platforms a word other than all": Bad(
        ONE + "    platforms: every\n",
        5,
        16,
        "platforms must be a list or the word 'all', not 'every'",
        "[linux/amd64, linux/arm64]",
    ),
    "target with a host": Bad(
        ONE + "    target: ghcr.io/acme/a\n",
        5,
        13,
        "bad target 'ghcr.io/acme/a'",
        "mirror/nsmithuk/local-kms",
    ),
    "target with a tag": Bad(
        ONE + "    target: mirror/a:1\n", 5, 13, "bad target 'mirror/a:1'", "no host, no tag"
    ),
    "two images writing one tag through one target": Bad(
        ONE
        + "    target: shared\n"
        + '  b:\n    source: acme/b\n    target: shared\n    versions: ["1.0.0"]\n',
        9,
        16,
        "target tag shared:1.0.0 is produced twice: by b/plain/1.0.0 and by a/plain/1.0.0",
        "remove the duplicate version",
    ),
    "negative ratelimit_min_remaining": Bad(
        "ratelimit_min_remaining: -1\n" + ONE, 1, 26, "less than the minimum of 0", "catalog reference"
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=list(BAD))
def test_bad_catalog_reports_file_line_column_and_fix(case: Bad, catalog_files: CatalogFiles) -> None:
    for folder, dockerfile in case.folders.items():
        catalog_files.build_folder(folder, dockerfile)
    path = catalog_files.write(case.text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path, smoke_kinds=KINDS)
    error = info.value
    assert error.exit_code == 2
    assert (error.path, error.line, error.column) == (str(path), case.line, case.column), error.render()
    assert case.message in error.message, error.render()
    assert error.fix is not None and case.fix in error.fix, error.render()
    where = f"{path}:{case.line}:{case.column}: " if case.line is not None else f"{path}: "
    assert error.render().startswith(where)
    assert "; fix: " in error.render()
    assert "\n" not in error.render()  # one line: what, where, and how to fix it


def test_first_error_in_file_order_is_reported(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        'images:\n  a:\n    source: acme/a\n    versions: [1.0]\n  b:\n    source: 5\n    versions: ["1.0"]\n'
    )
    with pytest.raises(CatalogError) as info:
        load_catalog(path, smoke_kinds=KINDS)
    assert (info.value.line, info.value.column) == (4, 16)


@pytest.mark.parametrize(
    ("dockerfile", "problem"),
    [
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", None),
        ("# syntax=docker/dockerfile:1\nARG BASE_IMAGE=scratch\nFROM $BASE_IMAGE AS base\n", None),
        ("arg BASE_IMAGE\nfrom ${BASE_IMAGE}\n", None),
        ("ARG BASE_IMAGE\nFROM --platform=$TARGETPLATFORM ${BASE_IMAGE} AS base\n", None),
        ("ARG OTHER\nFROM ${OTHER}\n", "FROM comes before 'ARG BASE_IMAGE'"),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}:latest\n", "the first FROM must be FROM ${BASE_IMAGE}"),
        ("# ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", "FROM comes before"),
    ],
)
def test_check_dockerfile(tmp_path: Path, dockerfile: str, problem: str | None) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile, encoding="utf-8")
    found = check_dockerfile(path)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_marks_point_at_values_and_keys() -> None:
    marked = load_marked("a:\n  b: [x, 'y']\n  c: {d: 1.10}\n", "f.yaml")
    assert marked.data == {"a": {"b": ["x", "y"], "c": {"d": 1.1}}}
    assert marked.where(("a", "b", 1)) == (2, 10)
    assert marked.where(("a", "c"), key=True) == (3, 3)
    assert marked.where(("a", "c")) == (3, 6)
    assert marked.raw[("a", "c", "d")] == "1.10"
    # an unknown path falls back to its nearest known ancestor
    assert marked.where(("a", "b", 7)) == (2, 6)


def test_merge_keys_behave_like_pyyaml_and_only_written_twice_is_a_duplicate() -> None:
    import yaml

    text = "a: &x {k: 1, j: 2}\nb: &y\n  <<: [*x, {k: 3}]\n  j: 5\nc: *y\nd:\n  <<: *y\n  k: 9\n"
    assert load_marked(text, "f.yaml").data == yaml.safe_load(text)
    with pytest.raises(CatalogError) as info:
        load_marked("a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\n  k: 3\n", "f.yaml")
    assert (info.value.line, info.value.column) == (5, 3)
    assert "duplicate key 'k' (first defined on line 4)" in info.value.message


def test_a_lock_file_that_is_a_directory_is_refused_where_it_is_named(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write("lock_file: d.json\n" + GOOD, build_folders=["img"])
    (path.parent / "d.json").mkdir()
    with pytest.raises(CatalogError) as refused:
        load_catalog(path, smoke_kinds=KINDS)
    assert refused.value.message == f"{path}:1:12: lock_file 'd.json' is a directory"
    assert refused.value.fix == "name a file, e.g. images.lock.json"
