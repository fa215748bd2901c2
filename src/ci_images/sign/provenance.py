"""SLSA provenance v1 predicates for the digests a run publishes, from plain inputs. Pure, but for file digests.

The predicate (slsa-framework/slsa spec/build-provenance.md, spec/schema/provenance.proto; in-toto/attestation
protos/in_toto_attestation/predicates/provenance/v1/provenance.proto): ``buildDefinition`` {``buildType``,
``externalParameters``, ``internalParameters``, ``resolvedDependencies``} and ``runDetails`` {``builder.id``,
``metadata`` {``invocationId``, ``startedOn``, ``finishedOn``}}. Our build types, versioned:

- ``BUILD_TYPE``: built ``FROM`` the upstream image pinned by digest. ``externalParameters`` = the catalog entry
  (image, variant, version, source, platforms, tags, build args) and the catalog's path; ``resolvedDependencies`` =
  ``upstream`` (the upstream tag's digest, as the image's ``org.opencontainers.image.base.digest`` label and the lock
  file's ``source_digest`` say), one ``base`` per platform the subject covers (the manifest digest built ``FROM``,
  with ``annotations.platform``), ``dockerfile`` (SHA-256) and ``context`` (dirHash), and ``catalog-repository`` at its commit
  (``gitCommit``).
- ``ASSEMBLE_TYPE``: the same inputs as ``BUILD_TYPE``, carried out as registry documents without an engine
  (a Dockerfile of metadata and ``COPY``/``ADD`` of build-context files; ``ci_images.assemble``): byte-reproducible
  from these inputs, so ``verify-images --rebuild`` can make the digest again.
- ``MIRROR_TYPE``: copied byte for byte, not built: the same, without dockerfile and context.

``context`` is digested as a tree with in-toto's ``dirHash`` (spec/v1/digest_set.md, Go's dirhash Hash1 in hex):
``cd CONTEXT && find . -type f | cut -c3- | LC_ALL=C sort | xargs -r sha256sum | sha256sum`` (``context_dirhash``).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ci_images.catalog.refs import parse_repository
from ci_images.sign import keyless
from ci_images.sign.statement import hex_of

PROJECT_URL = "https://github.com/getsops/ci-container-images"
BUILD_TYPE = f"{PROJECT_URL}/buildtypes/build/v1"
ASSEMBLE_TYPE = f"{PROJECT_URL}/buildtypes/assemble/v1"
MIRROR_TYPE = f"{PROJECT_URL}/buildtypes/mirror/v1"
LOCAL_BUILDER = f"{PROJECT_URL}/builders/local/v1"
UPSTREAM, BASE, DOCKERFILE, CONTEXT, CATALOG_REPOSITORY = (
    "upstream",
    "base",
    "dockerfile",
    "context",
    "catalog-repository",
)


@dataclass(frozen=True)
class EntryParameters:
    """The catalog entry, as the catalog says it: what the run was asked to make."""

    catalog: str  # the catalog's path, relative to the repository root (images.yaml)
    image: str
    variant: str
    version: str
    source: str  # the upstream repository as cataloged: docker.io/hashicorp/vault (the tag is ``version``)
    platforms: Sequence[str]  # empty: every platform upstream has (a mirror's `platforms: all`)
    tags: Sequence[str]  # the target references the entry's tags name
    build_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Upstream:
    """What the upstream tag resolved to: its digest (index or single manifest), and for each platform the subject
    covers, the manifest digest built from (or copied)."""

    digest: str
    platforms: Mapping[str, str]


@dataclass(frozen=True)
class Recipe:
    """The build's own files: paths relative to the repository root, the Dockerfile's SHA-256 (``file_digest``),
    the context's dirHash (``context_dirhash``), and the recipe hash the image's label carries."""

    dockerfile: str
    dockerfile_digest: str
    context: str
    context_dirhash: str
    recipe: str | None = None


@dataclass(frozen=True)
class Checkout:
    url: str  # https://github.com/OWNER/NAME
    commit: str  # the full commit hash, or "unknown"


@dataclass(frozen=True)
class Run:
    builder_id: str
    invocation_id: str
    started_on: str  # RFC 3339, UTC, seconds: 2026-01-02T03:04:05Z
    finished_on: str


# ---- inputs the wiring computes ---------------------------------------------------------------------------------


def file_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def context_dirhash(context: Path) -> str:
    """in-toto's ``dirHash`` of ``context``: hex SHA-256 of ``sha256sum``'s listing of every regular file under it
    (relative paths in byte order; symbolic links left out, as ``find -type f`` does)."""
    files: list[str] = []
    for folder, _, names in os.walk(context):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                files.append(path.relative_to(context).as_posix())
    listing = b"".join(
        f"{hashlib.sha256((context / name).read_bytes()).hexdigest()}  {name}\n".encode()
        for name in sorted(files, key=lambda n: n.encode())
    )
    return hashlib.sha256(listing).hexdigest()


def builder_id(env: Mapping[str, str]) -> str:
    """The workflow identity keyless signing certifies (SERVER/OWNER/NAME/.github/workflows/FILE@REF) in GitHub
    Actions; a reusable workflow, whose file is not in the environment, is named by its repository's workflows
    folder; outside Actions, LOCAL_BUILDER."""
    identity = keyless.workflow_identity(env)
    if identity:
        return identity
    if env.get("GITHUB_ACTIONS") == "true" and keyless.signing_repository(env):
        server = env.get("GITHUB_SERVER_URL", keyless.DEFAULT_SERVER).rstrip("/")
        return f"{server}/{keyless.signing_repository(env)}/.github/workflows"
    return LOCAL_BUILDER


def invocation_id(env: Mapping[str, str]) -> str:
    """The run's id: its GitHub Actions run attempt's URL, else a new UUID URN (call once per run)."""
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", keyless.DEFAULT_SERVER).rstrip("/")
        attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}/attempts/{attempt}"
    return f"urn:uuid:{uuid.uuid4()}"


def timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the predicate ----------------------------------------------------------------------------------------------


def image_purl(repository_name: str, tag: str, platform: str | None = None) -> str:
    """A package URL (purl-spec, type ``docker``) for an image: ``pkg:docker/hashicorp/vault@2.0.0``, a registry
    other than Docker Hub in ``repository_url``, the platform in ``platform``."""
    repository = parse_repository(repository_name)
    qualifiers: list[str] = []
    if not repository.is_docker_hub:
        qualifiers.append(f"repository_url={quote(repository.host, safe='')}")
    if platform:
        qualifiers.append(f"platform={quote(platform, safe='')}")
    path = repository.path.removeprefix("library/") if repository.is_docker_hub else repository.path
    return f"pkg:docker/{path}@{quote(tag, safe='')}" + (f"?{'&'.join(qualifiers)}" if qualifiers else "")


def _digest_set(digest: str) -> dict[str, str]:
    return {"sha256": hex_of(digest)}


def _external(entry: EntryParameters) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "image": entry.image,
        "variant": entry.variant,
        "version": entry.version,
        "source": f"{entry.source}:{entry.version}",
        "platforms": list(entry.platforms) or ["all"],
        "tags": list(entry.tags),
    }
    if entry.build_args:
        parameters["buildArgs"] = dict(sorted(entry.build_args.items()))
    return {"catalog": entry.catalog, "entry": parameters}


def _upstream(entry: EntryParameters, upstream: Upstream) -> list[dict[str, Any]]:
    dependencies: list[dict[str, Any]] = [
        {
            "name": UPSTREAM,
            "uri": image_purl(entry.source, entry.version),
            "digest": _digest_set(upstream.digest),
        }
    ]
    for platform, digest in sorted(upstream.platforms.items()):
        dependencies.append(
            {
                "name": BASE,
                "uri": image_purl(entry.source, entry.version, platform),
                "digest": _digest_set(digest),
                "annotations": {"platform": platform},
            }
        )
    return dependencies


def _checkout(checkout: Checkout) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"name": CATALOG_REPOSITORY, "uri": f"git+{checkout.url}"}
    if checkout.commit and checkout.commit != "unknown":
        descriptor["digest"] = {"gitCommit": checkout.commit}
    return descriptor


def _in_repository(checkout: Checkout, path: str) -> str:
    at = f"@{checkout.commit}" if checkout.commit and checkout.commit != "unknown" else ""
    return f"git+{checkout.url}{at}#{path}"


def _run_details(run: Run) -> dict[str, Any]:
    return {
        "builder": {"id": run.builder_id},
        "metadata": {
            "invocationId": run.invocation_id,
            "startedOn": run.started_on,
            "finishedOn": run.finished_on,
        },
    }


def build_predicate(
    entry: EntryParameters,
    upstream: Upstream,
    recipe: Recipe,
    checkout: Checkout,
    run: Run,
    *,
    build_type: str = BUILD_TYPE,
) -> dict[str, Any]:
    """The provenance of an image built (or, ``ASSEMBLE_TYPE``, assembled) from ``upstream`` with ``recipe`` (an
    index: every platform it lists)."""
    dependencies = [
        *_upstream(entry, upstream),
        {
            "name": DOCKERFILE,
            "uri": _in_repository(checkout, recipe.dockerfile),
            "digest": _digest_set(recipe.dockerfile_digest),
        },
        {
            "name": CONTEXT,
            "uri": _in_repository(checkout, recipe.context),
            "digest": {"dirHash": recipe.context_dirhash},
        },
        _checkout(checkout),
    ]
    definition: dict[str, Any] = {"buildType": build_type, "externalParameters": _external(entry)}
    if recipe.recipe:
        definition["internalParameters"] = {"recipe": recipe.recipe}
    definition["resolvedDependencies"] = dependencies
    return {"buildDefinition": definition, "runDetails": _run_details(run)}


def mirror_predicate(
    entry: EntryParameters, upstream: Upstream, checkout: Checkout, run: Run
) -> dict[str, Any]:
    """The provenance of a byte-for-byte copy of ``upstream``: nothing was built."""
    return {
        "buildDefinition": {
            "buildType": MIRROR_TYPE,
            "externalParameters": _external(entry),
            "resolvedDependencies": [*_upstream(entry, upstream), _checkout(checkout)],
        },
        "runDetails": _run_details(run),
    }


# ---- reading one back -------------------------------------------------------------------------------------------


def _dependencies(predicate: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    definition = predicate.get("buildDefinition")
    found = definition.get("resolvedDependencies") if isinstance(definition, Mapping) else None
    return [d for d in found or [] if isinstance(d, Mapping)]


def _sha256(descriptor: Mapping[str, Any]) -> str | None:
    digest = descriptor.get("digest")
    value = digest.get("sha256") if isinstance(digest, Mapping) else None
    return f"sha256:{value}" if isinstance(value, str) else None


def upstream_digest(predicate: Mapping[str, Any]) -> str | None:
    """The upstream digest a provenance names (None when it names none)."""
    for dependency in _dependencies(predicate):
        if dependency.get("name") == UPSTREAM:
            return _sha256(dependency)
    return None


def base_digests(predicate: Mapping[str, Any]) -> dict[str, str]:
    """{platform: upstream manifest digest} a provenance names."""
    result: dict[str, str] = {}
    for dependency in _dependencies(predicate):
        annotations = dependency.get("annotations")
        platform = annotations.get("platform") if isinstance(annotations, Mapping) else None
        digest = _sha256(dependency)
        if dependency.get("name") == BASE and isinstance(platform, str) and digest:
            result[platform] = digest
    return result


def build_type(predicate: Mapping[str, Any]) -> str | None:
    definition = predicate.get("buildDefinition")
    value = definition.get("buildType") if isinstance(definition, Mapping) else None
    return value if isinstance(value, str) else None
