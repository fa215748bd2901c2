"""The tool's commands against a registry behind a token service, as Docker Hub and GHCR authenticate: through the
door (`python -m ci_images`), as a user runs them.

The lab's token registry (conftest: ``token_registry``) is the target, under a repository prefix per test; the lab's
upstream serves the stand-ins. Its token service logs every request (user, scopes, answer), the registry every
request it answered: the witnesses for "one token request per scope while valid", "0 writes" and "nothing built".

Trust: where the lab could install its CAs in the engine's certs.d (root), the tool gets only the lab's own bundle,
which lacks the token registry's CA: the registry and its token service on another host are trusted through the
registry's certs.d entry alone, as README promises.
"""

from __future__ import annotations

import itertools
import json
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci_images.lab.lab import Lab
from ci_images.lab.token_registry import TokenRegistry
from ci_images.lab.tokens import Account, Level, Style, TokenRequest, TokenService
from ci_images.registry.client import RegistryClient
from ci_images.registry.copy import Endpoint, copy_image
from ci_images.registry.pool import ClientPool
from ci_images.sign.keys import generate_key_files
from tests.doors import clean_env, run_door
from tests.integration.conftest import REPO_ROOT, TOKEN_READER, TOKEN_WRITER, vault_catalog

pytestmark = pytest.mark.integration

STRANGER, SEEDER = "ci-stranger", "ci-seeder"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEY_PASSWORD = "token-key-7c2e"


@pytest.fixture(scope="module")
def token_registry_accounts() -> dict[str, Account]:
    """The writer publishes under getsops/ and reads upstream's names; the reader only reads getsops/; the stranger
    is granted nothing there; the seeder writes upstream's names (a mirror's source on the same registry)."""
    upstream_names = {"nsmithuk": Level.READ, "hashicorp": Level.READ, "library": Level.READ}
    return {
        TOKEN_WRITER: Account("pw-" + secrets.token_hex(8), {"getsops": Level.DELETE, **upstream_names}),
        TOKEN_READER: Account("pw-" + secrets.token_hex(8), {"getsops": Level.READ}),
        STRANGER: Account("pw-" + secrets.token_hex(8), {"elsewhere": Level.WRITE}),
        SEEDER: Account("pw-" + secrets.token_hex(8), {"library": Level.WRITE}),
    }


@dataclass
class Target:
    """A repository prefix of its own on the token registry, and how to run the tool against it."""

    lab: Lab
    registry: TokenRegistry
    root: Path
    prefix: str  # HOST/getsops/tok-XXXX

    @property
    def tokens(self) -> TokenService:
        return self.registry.tokens

    @property
    def path(self) -> str:
        return self.prefix.partition("/")[2]

    def env(
        self, user: str | None = TOKEN_WRITER, *, password: str | None = None, **extra: str
    ) -> dict[str, str]:
        env = {
            **self.lab.env(),
            "CI_IMAGES_REGISTRY": self.prefix,
            "XDG_CACHE_HOME": str(self.root / "cache"),
        }
        del env["CI_IMAGES_REGISTRY_USER"], env["CI_IMAGES_REGISTRY_PASSWORD"]
        if user is not None:
            env["CI_IMAGES_REGISTRY_USER"] = user
            env["CI_IMAGES_REGISTRY_PASSWORD"] = password or self.tokens.accounts[user].password
        if self.registry.registry.installed_ca is None:  # not root: give the tool a bundle with both CAs
            bundle = self.root / "both-cas.pem"
            bundle.write_bytes(self.lab.ca_bundle.read_bytes() + self.registry.ca.cert_path.read_bytes())
            env["SSL_CERT_FILE"] = str(bundle)
        return clean_env(**{**env, **extra})

    def run(self, argv: Sequence[str], env: dict[str, str], *, timeout: float = 900) -> Ran:
        token_mark, registry_mark = len(self.tokens.requests()), len(self.registry.registry.requests())
        started = time.monotonic()
        done = run_door("module", list(argv), env, timeout=timeout)
        return Ran(
            done,
            self.tokens.requests()[token_mark:],
            self.registry.registry.requests()[registry_mark:],
            time.monotonic() - started,
        )


@dataclass
class Ran:
    """One run of the door and what the token service and the registry saw during it."""

    done: subprocess.CompletedProcess[str]
    token_requests: list[TokenRequest]
    registry_requests: list[tuple[str, str]]
    seconds: float

    @property
    def errors(self) -> list[str]:
        return [line for line in self.done.stderr.splitlines() if line.startswith("error:")]

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(method, uri) for method, uri in self.registry_requests if method in WRITES]

    @property
    def tool_requests(self) -> list[TokenRequest]:
        """The tool's own token requests: the engine's (an assembled image's smoke test pulls it from the target)
        name the account, as docker's registry client does."""
        return [r for r in self.token_requests if r.account is None]

    def per_scope(self) -> Counter[tuple[str | None, str]]:
        """The tool's token requests per (user, scopes asked for)."""
        return Counter((r.user, " ".join(sorted(str(s) for s in r.scopes))) for r in self.tool_requests)

    def assert_fine(self) -> None:
        assert self.done.returncode == 0, self.done.stderr
        assert "Traceback" not in self.done.stderr

    def assert_one_line(self, code: int, *fragments: str) -> str:
        """Exit ``code``, one error line holding every fragment, no traceback."""
        assert self.done.returncode == code, self.done.stderr
        assert len(self.errors) == 1, self.done.stderr
        assert "Traceback" not in self.done.stderr and "internal error" not in self.done.stderr
        for fragment in fragments:
            assert fragment in self.errors[0], self.errors[0]
        return self.errors[0]


def _scope(repo: str, actions: str) -> str:
    return f"repository:{repo}:{actions}"


@pytest.fixture
def target(lab: Lab, token_registry: TokenRegistry, token_service: TokenService, tmp_path: Path) -> Target:
    token_service.set_lifetime(
        300
    )  # "while valid" spans a whole run; test_token_expiring_mid_run shortens it
    return Target(lab, token_registry, tmp_path, f"{token_registry.host}/getsops/tok-{secrets.token_hex(3)}")


def _key_pair(root: Path) -> tuple[Path, Path]:
    key, public, _ = generate_key_files(
        root / f"keys-{secrets.token_hex(2)}", {"COSIGN_PASSWORD": KEY_PASSWORD}
    )
    return key, public


def _push(
    target: Target, catalog: Path, env: dict[str, str], *extra: str
) -> tuple[Ran, list[dict[str, Any]]]:
    records = target.root / f"push-{secrets.token_hex(2)}.json"
    argv = ["push-images", "--catalog", str(catalog), "--lock", str(target.root / "images.lock.json")]
    ran = target.run([*argv, "--json", str(records), *extra], env)
    return ran, json.loads(records.read_text()) if records.exists() else []


# -- publishing: a cold push, the no-change push, signing and verifying in each answer style ---------------------


@dataclass
class Published:
    target: Target
    catalog: Path
    cold: Ran
    records: list[dict[str, Any]]


@pytest.fixture(scope="module")
def published(
    lab: Lab, token_registry: TokenRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Published]:
    """One cold push of vault (one version, amd64: a build and a smoke test) to the token registry as its writer."""
    root = tmp_path_factory.mktemp("token-push")
    token_registry.tokens.reset(lifetime_s=300)
    target = Target(lab, token_registry, root, f"{token_registry.host}/getsops/tok-{secrets.token_hex(3)}")
    catalog = vault_catalog(root / "catalog")
    ran, records = _push(target, catalog, target.env())
    yield Published(target, catalog, ran, records)
    token_registry.tokens.reset()


def test_cold_push_publishes_with_one_token_per_scope(published: Published) -> None:
    ran, path = published.cold, f"{published.target.path}/vault"
    ran.assert_fine()
    (record,) = published.records
    assert record["action"] == "built", record
    assert json.loads((published.target.root / "images.lock.json").read_text())["images"]
    fetched = ran.per_scope()
    assert max(fetched.values()) == 1, fetched  # one request per (user, scope) while the token is valid
    assert fetched[(TOKEN_WRITER, _scope(path, "pull"))] == 1  # the login's, which the plan reads with
    assert fetched[(TOKEN_WRITER, _scope(path, "pull,push"))] == 1  # the check before building, then the push
    assert {r.status for r in ran.token_requests} == {200}
    # The check read the token's access claim: no upload session was opened and cancelled to find out.
    assert not [uri for method, uri in ran.registry_requests if method == "DELETE"]


def test_no_change_push_writes_nothing_and_asks_no_push_token(published: Published) -> None:
    target = published.target
    ran, records = _push(target, published.catalog, target.env())
    ran.assert_fine()
    assert [r["action"] for r in records] == ["skipped"]
    assert ran.writes == []
    assert not [
        key for key in ran.per_scope() if "push" in key[1]
    ]  # nothing to write: no check, no push token
    assert max(ran.per_scope().values()) == 1


@pytest.mark.parametrize("style", list(Style))
def test_sign_and_verify_in_each_answer_style(
    published: Published, token_service: TokenService, style: Style
) -> None:
    target = published.target
    token_service.reset(style=style, lifetime_s=300)
    key, public = _key_pair(target.root)
    lock = str(target.root / "images.lock.json")
    env = target.env(COSIGN_KEY=str(key), COSIGN_PASSWORD=KEY_PASSWORD)
    signed = target.run(["sign-images", "--catalog", str(published.catalog), "--lock", lock], env)
    signed.assert_fine()
    assert "2 manifests signed now" in signed.done.stderr  # the index and its one platform (recursive)
    assert any(method == "PUT" and "/manifests/sha256-" in uri for method, uri in signed.writes)
    # `published` was pushed without a key, so it has no attestations (sign-images signs, it does not attest).
    verify = ["verify-images", "--catalog", str(published.catalog), "--lock", lock, "--key", str(public)]
    verified = target.run([*verify, "--no-attest"], env)
    verified.assert_fine()
    assert "published tags verified" in verified.done.stderr
    for ran in (signed, verified):
        assert {r.answer for r in ran.token_requests} == {str(style)}
        assert max(ran.per_scope().values()) == 1


# -- the checks before the work: one line, nothing built ----------------------------------------------------------


@pytest.mark.parametrize("command", ["push-images", "plan", "sign-images", "verify-images"])
def test_wrong_credentials_are_one_line_and_one_failed_login(target: Target, command: str) -> None:
    key, public = _key_pair(target.root)
    env = target.env(password="not-the-password", COSIGN_KEY=str(key), COSIGN_PASSWORD=KEY_PASSWORD)
    argv = [command, "--catalog", str(vault_catalog(target.root))]
    lock = ["--lock", str(target.root / "lock.json")]
    argv += {
        "push-images": ["--force", *lock],
        "sign-images": lock,
        "verify-images": ["--key", str(public), *lock],
    }.get(command, [])
    ran = target.run(argv, env)
    line = ran.assert_one_line(3, f"user {TOKEN_WRITER!r}", "401 incorrect username or password")
    assert target.tokens.realm.split("/")[2] in line  # it names the token service
    assert [(r.status, r.answer) for r in ran.token_requests] == [(401, "refused")]  # one failed login
    assert ran.registry_requests == [
        ("GET", "/v2/")
    ]  # the login's challenge: no plan, nothing built or pushed
    assert "not-the-password" not in ran.done.stdout + ran.done.stderr
    assert not (target.root / "lock.json").exists()


def test_read_only_namespace_stops_before_building(target: Target) -> None:
    path = f"{target.path}/vault"
    ran, _ = _push(target, vault_catalog(target.root), target.env(TOKEN_READER))
    ran.assert_one_line(
        3,
        f"user {TOKEN_READER!r} may not push to {target.prefix}/vault",
        "granted no push",
        "nothing was built",
    )
    assert ran.per_scope()[(TOKEN_READER, _scope(path, "pull,push"))] == 1
    assert ran.writes == []  # not even an upload session: the token said so
    assert ": build (" not in ran.done.stderr  # the pipeline never started
    assert not (target.root / "images.lock.json").exists()


def test_a_user_granted_nothing_gets_one_line_from_plan(target: Target) -> None:
    catalog = REPO_ROOT / "images.yaml"  # the shipped catalog: 12 entries over 4 repositories
    ran = target.run(["plan", "--catalog", str(catalog)], target.env(STRANGER))
    ran.assert_one_line(3, f"user {STRANGER!r} may not read {target.prefix}/", "granted no pull")
    assert len(ran.token_requests) == 1  # the login; nothing per entry


def test_plan_of_the_shipped_catalog_asks_one_token_per_repository(target: Target) -> None:
    catalog = REPO_ROOT / "images.yaml"
    ran = target.run(["plan", "--catalog", str(catalog)], target.env())
    ran.assert_fine()
    assert len(ran.done.stdout.splitlines()) >= 12  # a line per entry
    fetched = ran.per_scope()
    assert max(fetched.values()) == 1, fetched
    assert len(ran.token_requests) == 4, fetched  # local-kms, vault and the two mirrors: one pull token each


def test_a_run_that_publishes_nothing_writes_no_lock_file(target: Target) -> None:
    catalog = vault_catalog(target.root)
    catalog.write_text(
        catalog.read_text().replace('"2.0.0"', '"9.9.9"'), encoding="utf-8"
    )  # upstream has none
    ran, records = _push(target, catalog, target.env())
    assert ran.done.returncode == 3, ran.done.stderr
    assert [r["action"] for r in records] == ["failed"]
    assert not (target.root / "images.lock.json").exists()
    assert ran.writes == []


# -- a token that expires mid-run, a mirror that mounts across repositories ----------------------------------------


def test_tokens_expiring_mid_run_are_fetched_again_and_only_then(target: Target) -> None:
    """GHCR's answers carry no expires_in: the JWT's own exp says the token lives 5 s, not distribution's 60."""
    target.tokens.reset(style=Style.GHCR, lifetime_s=5)
    catalog = vault_catalog(target.root)
    # A RUN step: the engine builds it, which takes the seconds this needs (an assembly uploads at once).
    with (catalog.parent / "images" / "vault" / "Dockerfile").open("a", encoding="utf-8") as dockerfile:
        dockerfile.write("RUN true\n")
    ran, records = _push(target, catalog, target.env())
    ran.assert_fine()
    assert [r["action"] for r in records] == ["built"]
    times: dict[tuple[str | None, str], list[float]] = {}
    for request in ran.tool_requests:
        times.setdefault((request.user, " ".join(str(s) for s in request.scopes)), []).append(request.at)
    push_scope = (TOKEN_WRITER, _scope(f"{target.path}/vault", "pull,push"))
    # The check's token had expired when the upload came (a build and a smoke test take longer than 4 s).
    assert len(times[push_scope]) >= 2, (ran.seconds, times)
    for key, seen in times.items():  # kept while valid: no scope asked for again within 3 s (5 s tokens)
        assert all(later - earlier > 3 for earlier, later in itertools.pairwise(seen)), (key, seen)


def _seed_upstream_name(lab: Lab, registry: TokenRegistry, repo: str, version: str) -> str:
    """Copy upstream's ``repo:version`` into the token registry under the same name (as the seeder)."""
    seeder = ClientPool(
        lambda host: RegistryClient(
            host, credentials=registry.credentials(SEEDER), ca_bundle=registry.ca_bundle
        )
    )
    upstream = ClientPool(lambda host: RegistryClient(host, ca_bundle=lab.ca_bundle, role="upstream"))
    try:
        copied = copy_image(
            Endpoint(upstream, lab.upstream.host, repo),
            lab.standins[repo][version],
            Endpoint(seeder, registry.host, repo),
        )
        seeder.get(registry.host).put_manifest(repo, version, copied.body, copied.media_type)
        return copied.digest
    finally:
        seeder.close()
        upstream.close()


def test_mirror_within_the_registry_mounts_across_repositories(target: Target, lab: Lab) -> None:
    digest = _seed_upstream_name(lab, target.registry, "library/vault", "1.10.0")
    catalog = target.root / "mirror.yaml"
    catalog.write_text(
        f"""upstream_mirror: {target.registry.host}
images:
  vault-upstream:
    source: docker.io/library/vault
    target: mirror/library/vault
    versions: ["1.10.0"]
    platforms: all
    tags: ["{{version}}"]
    smoke: null
""",
        encoding="utf-8",
    )
    upstream_login = {  # the mirror's source is on the token registry too, read as the writer
        "CI_IMAGES_UPSTREAM_MIRROR": target.registry.host,
        "CI_IMAGES_UPSTREAM_USER": TOKEN_WRITER,
        "CI_IMAGES_UPSTREAM_PASSWORD": target.tokens.accounts[TOKEN_WRITER].password,
    }
    ran, records = _push(target, catalog, target.env(**upstream_login))
    ran.assert_fine()
    (record,) = records
    assert (record["action"], record["digest"]) == ("mirrored", digest), record
    posts = [uri for method, uri in ran.registry_requests if method == "POST"]
    assert posts and all("mount=" in uri and "from=library%2Fvault" in uri for uri in posts)
    assert not [uri for method, uri in ran.registry_requests if method == "PUT" and "/blobs/" in uri]
    mirror = f"{target.path}/mirror/library/vault"
    fetched = ran.per_scope()
    assert max(fetched.values()) == 1, fetched  # parallel blob copies share one token per scope
    mount_scope = " ".join(sorted([_scope(mirror, "pull,push"), _scope("library/vault", "pull")]))
    assert fetched[(TOKEN_WRITER, mount_scope)] == 1  # the mount asks for pull on its source
    granted = [r for r in ran.token_requests if " ".join(sorted(str(s) for s in r.scopes)) == mount_scope]
    assert {str(s) for s in granted[0].access} == {
        _scope(mirror, "pull,push"),
        _scope("library/vault", "pull"),
    }

    again, records = _push(target, catalog, target.env(**upstream_login))
    again.assert_fine()
    assert [r["action"] for r in records] == ["skipped"] and again.writes == []


# -- a registry with basic auth: the check opens an upload session and cancels it ---------------------------------


def test_basic_auth_target_check_opens_and_cancels_an_upload_session(lab: Lab, tmp_path: Path) -> None:
    prefix = f"{lab.target.host}/getsops/basic-{secrets.token_hex(3)}"
    catalog = tmp_path / "mirror.yaml"
    catalog.write_text(
        """images:
  vault-upstream:
    source: docker.io/library/vault
    target: mirror/library/vault
    versions: ["1.10.0"]
    platforms: [linux/amd64]
    tags: ["{version}"]
    smoke: null
""",
        encoding="utf-8",
    )
    env = clean_env(**{**lab.env(), "CI_IMAGES_REGISTRY": prefix, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    mark = len(lab.target.requests())
    done = run_door(
        "module", ["push-images", "--catalog", str(catalog), "--lock", str(tmp_path / "l.json")], env
    )
    assert done.returncode == 0, done.stderr
    repo = f"/v2/{prefix.partition('/')[2]}/mirror/library/vault/blobs/uploads/"
    writes = [(m, u) for m, u in lab.target.requests()[mark:] if m in WRITES]
    assert writes[0] == ("POST", repo)  # the check: an upload session opened ...
    assert writes[1][0] == "DELETE" and writes[1][1].startswith(
        repo
    )  # ... and cancelled before anything else
    assert [m for m, u in writes if m == "DELETE"] == ["DELETE"]  # once per repository

    wrong = {**env, "CI_IMAGES_REGISTRY_PASSWORD": "wrong-" + secrets.token_hex(4)}
    mark = len(lab.target.requests())
    refused = run_door("module", ["push-images", "--catalog", str(catalog), "--force"], wrong)
    assert refused.returncode == 3, refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.startswith("error:")]) == 1, (
        refused.stderr
    )
    assert lab.target.requests()[mark:] == [
        ("GET", "/v2/"),
        ("GET", "/v2/"),
    ]  # anonymous, then one failed login
