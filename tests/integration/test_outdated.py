"""outdated and bump in the lab: the lab's upstream holds extra tags (newer releases, pre-releases, aliases and tags
that are no version at all) in a repository of their own; `invoke outdated --json` lists exactly the newer releases,
reading tag lists only, and `invoke bump` adds them to a copy of a catalog with its comments kept.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from ci_images.lab.lab import put_tags
from ci_images.oci import OCI_MANIFEST
from ci_images.registry.client import RegistryClient
from tests.doors import clean_env, run_door

pytestmark = pytest.mark.integration

REPO = (
    "outdated-tests/vault"  # only this module writes here: docker.io/outdated-tests/vault through the mirror
)
CATALOGED = ["1.21.4", "2.0.0"]
NEWER = ["2.0.1", "2.1.0", "2.10.0"]  # 2.10.0 sorts after 2.1.0 as a version, before it as text
OTHERS = [
    "1.14.10",  # older than the newest cataloged version
    "1.22.0",  # newer than 1.21.4 but not than 2.0.0: outdated compares with the newest
    "2.1.0-rc1",  # a pre-release older than the newest release in view
    "2.11.0-beta1",  # a pre-release newer than every release: listed apart, never added
    "2.1",  # an alias upstream moves
    "v2.12.0",  # another spelling
    "latest",
    "sha-0a1b2c3",
    "nightly",
]
FILLER = [f"1.0.{n}" for n in range(12)]  # old releases: the list spans pages of ten

CATALOG = """\
# A copy of a catalog, with the comments bump must keep.
registry: ghcr.io/acme/ci  # never reached: outdated and bump read upstream only
platforms: [linux/amd64]

images:
  vault:
    # The lab's upstream holds this under {repo}.
    source: docker.io/{repo}
    versions: ["1.21.4", "2.0.0"]  # oldest first
{updates}"""


def _push_tags(lab: Any, tags: list[str]) -> None:
    """One tiny image (an empty config, no layers) under every tag: a tag list is all outdated reads."""
    client = lab.upstream_client()
    try:
        config = b"{}"
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        client.upload_blob(REPO, config_digest, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": 2,
            },
            "layers": [],
        }
        put_tags(client, REPO, json.dumps(manifest).encode(), OCI_MANIFEST, tags)
    finally:
        client.close()


@pytest.fixture(scope="module")
def upstream(lab: Any) -> Any:
    _push_tags(lab, CATALOGED + NEWER + OTHERS + FILLER)
    return lab


def _catalog(tmp_path: Path, updates: str = "") -> Path:
    path = tmp_path / "images.yaml"
    path.write_text(
        CATALOG.format(repo=REPO, updates=f"    {updates}\n" if updates else ""), encoding="utf-8"
    )
    return path


def _env(lab: Any) -> dict[str, str]:
    env = lab.env()
    env.pop("CI_IMAGES_REGISTRY")
    return clean_env(**env)


@contextmanager
def paging_mirror(lab: Any, page: int) -> Iterator[tuple[str, list[str]]]:
    """A plain-HTTP loopback mirror in front of the lab's upstream that answers tag lists in pages of at most
    ``page`` tags with a ``Link: <...>; rel="next"`` header, as Docker Hub does (Debian's docker-registry 2.8 ignores
    ``n`` and sends every tag at once). Everything else is forwarded as it is. Yields (host, paths asked)."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            asked.append(self.path)
            url = urlsplit(self.path)
            real = requests.get(
                f"https://{lab.upstream.host}{url.path}", verify=str(lab.ca_bundle), timeout=30
            )
            body, headers = (
                real.content,
                {"Content-Type": real.headers.get("Content-Type", "application/json")},
            )
            if url.path.endswith("/tags/list") and real.status_code == 200:
                query = parse_qs(url.query)
                size = min(int(query.get("n", [page])[0]), page)
                last = query.get("last", [""])[0]
                rest = [tag for tag in sorted(real.json()["tags"]) if tag > last]
                body = json.dumps({"name": real.json()["name"], "tags": rest[:size]}).encode()
                if len(rest) > size:
                    headers["Link"] = (
                        f'<{url.path}?{urlencode({"last": rest[size - 1], "n": size})}>; rel="next"'
                    )
            self.send_response(real.status_code)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_list_tags_follows_link_pages(upstream: Any) -> None:
    everything = CATALOGED + NEWER + OTHERS + FILLER
    with paging_mirror(upstream, page=10) as (host, asked):
        client = RegistryClient(host, plain_http=True, role="upstream")
        try:
            tags = client.list_tags(REPO)
        finally:
            client.close()
    assert sorted(tags) == sorted(everything) and len(tags) == len(set(tags))
    pages = [path for path in asked if "/tags/list" in path]
    assert len(pages) == -(-len(everything) // 10), pages  # every page, each asked for once


def test_outdated_reads_every_page_through_the_mirror(upstream: Any, tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    with paging_mirror(upstream, page=4) as (host, asked):
        env = {**_env(upstream), "CI_IMAGES_UPSTREAM_MIRROR": f"http://{host}"}
        done = run_door("module", ["outdated", "--json", "--catalog", str(catalog)], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["newer"] == NEWER
    assert len([path for path in asked if "/tags/list" in path]) == 7  # 26 tags, 4 a page


def test_outdated_lists_exactly_the_newer_releases_and_reads_only_tag_lists(
    upstream: Any, tmp_path: Path
) -> None:
    catalog = _catalog(tmp_path)
    before = len(upstream.upstream.requests())
    done = run_door("invoke", ["outdated", "--json", "--catalog", str(catalog)], _env(upstream))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {
            "image": "vault",
            "source": f"docker.io/{REPO}",
            "read_from": f"{upstream.upstream.host}/{REPO}",
            "current": "2.0.0",
            "newer": NEWER,
            "prereleases": ["2.11.0-beta1"],
            "filter": {"range": "", "exclude": []},
        }
    ]
    asked = upstream.upstream.requests()[before:]
    assert asked and all(
        method == "GET" and ("/tags/list" in uri or uri == "/v2/") for method, uri in asked
    ), asked


def test_the_catalog_filter_keeps_lines_out(upstream: Any, tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, updates='updates: {range: "<2.10", exclude: ["^2\\\\.0\\\\."]}')
    done = run_door("module", ["outdated", "--json", "--catalog", str(catalog)], _env(upstream))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["newer"] == ["2.1.0"]


def test_bump_adds_them_keeping_the_comments_then_nothing_is_newer(upstream: Any, tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    before = catalog.read_text(encoding="utf-8")
    done = run_door("invoke", ["bump", "--catalog", str(catalog)], _env(upstream))
    assert done.returncode == 0, done.stderr
    after = catalog.read_text(encoding="utf-8")
    # One line changes: the list grows (its end-of-line comment stays, one space after the longer list).
    assert after == before.replace(
        'versions: ["1.21.4", "2.0.0"]  # oldest first',
        'versions: ["1.21.4", "2.0.0", "2.0.1", "2.1.0", "2.10.0"] # oldest first',
    )
    assert '-    versions: ["1.21.4", "2.0.0"]  # oldest first' in done.stdout.splitlines()
    assert (
        '+    versions: ["1.21.4", "2.0.0", "2.0.1", "2.1.0", "2.10.0"] # oldest first'
        in done.stdout.splitlines()
    )
    again = run_door("module", ["outdated", "--json", "--catalog", str(catalog)], _env(upstream))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["newer"] == []
    unchanged = run_door("module", ["bump", "--catalog", str(catalog)], _env(upstream))
    assert unchanged.returncode == 0 and "nothing to add" in unchanged.stderr
    assert catalog.read_text(encoding="utf-8") == after


def test_without_a_reachable_upstream_outdated_says_how_to_fix_it(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    env = clean_env(CI_IMAGES_UPSTREAM_MIRROR="127.0.0.1:9", CI_IMAGES_REGISTRY_TIMEOUT="1")
    done = run_door("module", ["outdated", "--catalog", str(catalog)], env, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "cannot read the tags of 127.0.0.1:9/outdated-tests/vault" in done.stderr
    assert "CI_IMAGES_UPSTREAM_MIRROR" in done.stderr
