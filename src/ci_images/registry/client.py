"""The one registry client: a thin layer over ``requests`` for the distribution v2 API.

Anonymous first; a 401 answer's ``WWW-Authenticate`` picks token auth (Docker Hub, GHCR) or basic auth (a
``docker-registry`` with htpasswd): see ``auth.py``. Every request is retried on 429, 5xx and connection
failures, counted by (method, kind) so reports and tests can prove that an unchanged run made no pulls or uploads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode, urljoin

import requests

from ci_images.errors import RegistryError, UsageError
from ci_images.log import log, redact
from ci_images.oci import MANIFEST_MEDIA_TYPES, OCI_INDEX, refuse_plain_http, sha256_digest
from ci_images.registry.auth import Authenticator, AuthState, Credentials, challenge_words
from ci_images.registry.stream import (
    CHUNK,
    BlobSource,
    SizedChunks,
    SourceInterrupted,
    checked_chunks,
    local_chunks,
)
from ci_images.registry.transport import (
    Body,
    ConnectionDropped,
    RateLimit,
    RequestKind,
    Transport,
    redact_url,
    registry_message,
)
from ci_images.retry import RetryPolicy

Role = Literal["target", "upstream"]
_CREDENTIAL_FIX: dict[Role, str] = {
    "target": "set CI_IMAGES_REGISTRY_USER and CI_IMAGES_REGISTRY_PASSWORD (or `docker login {host}`)",
    "upstream": "set CI_IMAGES_UPSTREAM_USER and CI_IMAGES_UPSTREAM_PASSWORD",
}


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int
    ratelimit: RateLimit | None


class RegistryClient:
    """One registry host. Not thread-safe: give each thread its own client."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        plain_http: bool = False,
        ca_bundle: Path | None = None,
        retry: RetryPolicy | None = None,
        role: Role = "target",
        read_timeout_s: float | None = None,
    ) -> None:
        if plain_http:
            refuse_plain_http(host, f"registry {host}")
        self.host = host
        self.credentials = credentials
        self.plain_http = plain_http
        self.role = role
        self.base_url = f"{'http' if plain_http else 'https'}://{host}"
        self.transport = Transport(
            retry=retry, ca_bundle=ca_bundle, read_timeout_s=read_timeout_s, registry=host
        )
        self._authn = Authenticator(host, credentials, self.transport, self._credentials_fix)

    @property
    def auth(self) -> AuthState:
        return self._authn.state

    def share_auth(self, state: AuthState) -> None:
        """Use ``state`` (what the host asked for, and its tokens) with the other clients of the same host."""
        self._authn.state = state

    @property
    def request_count(self) -> int:
        return self.transport.request_count

    def count(self, method: str | None = None, kind: RequestKind | None = None) -> int:
        return self.transport.count(method, kind)

    def close(self) -> None:
        self.transport.close()

    # ---- API ---------------------------------------------------------------------------------------------------

    def ping(self, scope: str | None = None) -> None:
        """GET /v2/: proves the registry answers and, with credentials, that they are accepted. On a token registry
        the login fetches the token of ``scope`` (e.g. the first read's, which then needs no request of its own)."""
        self._call("GET", "/v2/", kind="ping", scope=scope, expect={200})

    @property
    def scheme(self) -> str | None:
        """How the registry asked to authenticate: "bearer", "basic", or None (it has not asked)."""
        return self._authn.state.scheme

    def grants(self, repo: str, action: str) -> bool | None:
        """On a token registry: whether the token for ``action`` on ``repo`` (``pull``; ``push`` asks for
        ``pull,push``, as uploads do) grants it, fetching that token unless one is held. None when the registry does
        not use tokens or the token does not say (an opaque token)."""
        if self.scheme != "bearer":
            return None
        scope = _scope(repo, "pull" if action == "pull" else "pull,push")
        return self._authn.token(scope).grants(repo, action)

    def probe_upload(self, repo: str) -> str | None:
        """Open an upload session in ``repo`` and cancel it (DELETE): nothing is stored. None when the registry
        opened it; else what it answered, in its own words."""
        resp = self._call(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            kind="upload",
            scope=_scope(repo, "pull,push"),
            expect=_ANY_STATUS,
        )
        assert resp is not None
        status, words, location = (
            resp.status_code,
            redact(registry_message(resp)),
            resp.headers.get("Location"),
        )
        resp.close()
        if status not in (201, 202) or not location:
            return f"{status} {words}{challenge_words(resp)}".strip()
        cancel = self._call(
            "DELETE",
            urljoin(self.base_url + "/", location),
            kind="upload",
            scope=_scope(repo, "pull,push"),
            expect=_ANY_STATUS,
        )
        assert cancel is not None
        cancel.close()
        if cancel.status_code not in (200, 202, 204):  # the session expires on the registry's own schedule
            log.debug(
                f"{self.host}/{repo}: cancelling the probe's upload session answered {cancel.status_code}"
            )
        return None

    def _manifest_request(self, method: str, repo: str, ref: str) -> requests.Response | None:
        return self._call(
            method,
            f"/v2/{repo}/manifests/{ref}",
            kind="manifest",
            scope=_scope(repo, "pull"),
            expect={200},
            missing_ok=True,
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        )

    def head_manifest(self, repo: str, ref: str) -> ManifestInfo | None:
        resp = self._manifest_request("HEAD", repo, ref)
        if resp is None:
            return None
        digest = resp.headers.get("Docker-Content-Digest") or (ref if ref.startswith("sha256:") else "")
        if not digest:  # a registry that omits the header on HEAD costs a GET (a pull on Docker Hub)
            got = self.get_manifest(repo, ref)
            return got[0] if got else None
        return ManifestInfo(
            digest=digest,
            media_type=_content_type(resp),
            size=int(resp.headers.get("Content-Length") or 0),
            ratelimit=RateLimit.parse(resp.headers),
        )

    def get_manifest(self, repo: str, ref: str) -> tuple[ManifestInfo, bytes] | None:
        resp = self._manifest_request("GET", repo, ref)
        if resp is None:
            return None
        body = resp.content
        digest = sha256_digest(body)
        claimed = resp.headers.get("Docker-Content-Digest")
        if (claimed and claimed != digest) or (ref.startswith("sha256:") and ref != digest):
            raise RegistryError(
                f"{self.host}/{repo}:{ref}: manifest body has digest {digest}, registry claims {claimed or ref}",
                fix="the registry or a proxy altered the manifest; retry, or report it to the registry operator",
            )
        info = ManifestInfo(digest, _content_type(resp), len(body), RateLimit.parse(resp.headers))
        return info, body

    def get_referrers(self, repo: str, digest: str) -> bytes | None:
        """The OCI referrers index of ``digest`` (distribution spec 1.1, ``GET /v2/<name>/referrers/<digest>``);
        None where the registry has no referrers API (404 or 400, or an answer that is not an OCI index: GHCR,
        distribution 2.8): go-containerregistry's remote.Referrers then reads the fallback tag ``sha256-<hex>``."""
        resp = self._call(
            "GET",
            f"/v2/{repo}/referrers/{digest}",
            kind="manifest",
            scope=_scope(repo, "pull"),
            expect={200, 400, 404},
        )
        assert resp is not None
        try:
            return resp.content if resp.status_code == 200 and _content_type(resp) == OCI_INDEX else None
        finally:
            resp.close()

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self._call(
            "HEAD",
            f"/v2/{repo}/blobs/{digest}",
            kind="blob",
            scope=_scope(repo, "pull"),
            expect={200},
            missing_ok=True,
        )
        return resp is not None

    def get_blob(self, repo: str, digest: str) -> bytes:
        resp = self._call(
            "GET", f"/v2/{repo}/blobs/{digest}", kind="blob", scope=_scope(repo, "pull"), expect={200}
        )
        assert resp is not None
        if sha256_digest(resp.content) != digest:
            raise RegistryError(f"{self.host}/{repo}: blob {digest} arrived with a different digest")
        return resp.content

    @contextmanager
    def open_blob(self, repo: str, digest: str, *, size: int | None = None) -> Iterator[Iterator[bytes]]:
        """Stream a blob: its bytes as they arrive, exactly as stored (no content decoding), checked against
        ``digest`` (and ``size``) at the end. A short or broken stream raises SourceInterrupted."""
        resp = self._call(
            "GET",
            f"/v2/{repo}/blobs/{digest}",
            kind="blob",
            scope=_scope(repo, "pull"),
            expect={200},
            stream=True,
        )
        assert resp is not None
        try:
            yield checked_chunks(
                resp.raw.stream(CHUNK, decode_content=False), f"{self.host}/{repo}", digest, size
            )
        finally:
            resp.close()

    def upload_blob(
        self, repo: str, digest: str, data: bytes | Path, *, mount_from: str | None = None
    ) -> str:
        """Upload a blob held in memory or in a file; see upload_blob_stream."""
        size = data.stat().st_size if isinstance(data, Path) else len(data)
        return self.upload_blob_stream(repo, digest, size, lambda: local_chunks(data), mount_from=mount_from)

    def upload_blob_stream(
        self, repo: str, digest: str, size: int, source: BlobSource, *, mount_from: str | None = None
    ) -> str:
        """Upload a blob unless the target has it: "present", "mounted" or "uploaded".

        HEAD first: a blob already in ``repo`` is never sent again. ``mount_from`` names another repository on
        this host that holds the blob: the registry links it instead of receiving the bytes. Otherwise one POST
        opens an upload and one PUT streams the bytes from ``source`` with their digest. A connection that drops
        part-way (on either side) leaves an upload session that cannot take the bytes again, so the whole upload
        starts over: a new POST and ``source`` opened again from the start, within the retry policy's budget.
        """
        if self.blob_exists(repo, digest):
            return "present"
        policy = self.transport.retry
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            location = self._start_upload(repo, digest, mount_from)
            if location is None:
                return "mounted"
            try:
                self._finish_upload(repo, location, digest, size, source, mount_from)
                return "uploaded"
            except (ConnectionDropped, SourceInterrupted, _UploadRefused) as exc:
                wait = policy.next_wait(attempt, time.monotonic() - started)
                what = f"upload of {digest} ({size} bytes) to {self.host}/{repo}"
                if wait is None:
                    raise RegistryError(
                        f"{what} failed {attempt} times; last: {exc}",
                        fix=f"check that {self.host} is up and that the connection to it holds; retry later",
                    ) from exc
                log.warning(
                    f"{what} interrupted ({exc}); retry {attempt}/{policy.max_attempts}: starting it again in {wait:.1f} s"
                )
                time.sleep(wait)

    def _start_upload(self, repo: str, digest: str, mount_from: str | None) -> str | None:
        """POST an upload (or a mount); the upload's location, or None when the blob was mounted."""
        query = {"mount": digest, "from": mount_from} if mount_from else {}
        started = self._call(
            "POST",
            f"/v2/{repo}/blobs/uploads/" + (f"?{urlencode(query)}" if query else ""),
            kind="upload",
            scope=self._upload_scope(repo, mount_from),
            expect={201, 202},
        )
        assert started is not None
        if started.status_code == 201:  # mounted from the other repository
            return None
        location = urljoin(self.base_url + "/", started.headers["Location"])
        return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})

    def _finish_upload(
        self, repo: str, location: str, digest: str, size: int, source: BlobSource, mount_from: str | None
    ) -> None:
        @contextmanager
        def body() -> Iterator[SizedChunks]:
            with source() as chunks:
                yield SizedChunks(chunks, size)

        headers = {"Content-Type": "application/octet-stream"}
        resp = self._call(
            "PUT",
            location,
            kind="upload",
            scope=self._upload_scope(repo, mount_from),  # the POST's token serves the PUT
            expect=_ANY_STATUS,
            headers=headers,
            # requests would send an empty stream chunked: an empty blob goes as an empty body.
            body=body if size else b"",
            resend=False,
        )
        assert resp is not None
        if resp.status_code in (401, 403):
            raise RegistryError(
                f"PUT {redact_url(location)}: {resp.status_code} {redact(registry_message(resp))}"
                f"{challenge_words(resp)}",
                fix=self._credentials_fix(),
            )
        if resp.status_code != 201:
            raise _UploadRefused(f"{resp.status_code} {redact(registry_message(resp))}")
        claimed = resp.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(f"{self.host}/{repo}: registry stored blob {claimed}, expected {digest}")

    def _upload_scope(self, repo: str, mount_from: str | None) -> str:
        scope = _scope(repo, "pull,push")
        return f"{scope} {_scope(mount_from, 'pull')}" if mount_from else scope

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its own digest; returns the digest, checked against the registry's."""
        digest = sha256_digest(body)
        if ref.startswith("sha256:") and ref != digest:
            raise UsageError(f"manifest for {repo} has digest {digest}, cannot store it as {ref}")
        resp = self._call(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            kind="manifest",
            scope=_scope(repo, "pull,push"),
            expect={201},
            headers={"Content-Type": media_type},
            body=body,
        )
        assert resp is not None
        claimed = resp.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(
                f"{self.host}/{repo}:{ref}: registry stored digest {claimed}, expected {digest}"
            )
        return digest

    def list_tags(self, repo: str, *, page_size: int = 1000) -> list[str]:
        """All tags, following ``Link: <...>; rel="next"`` pages of up to ``page_size`` (a registry may send fewer
        and still link the next). An unknown repo has none. Docker Hub does not count a tag list as a pull."""
        tags: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list?n={page_size}"
        while url:
            resp = self._call(
                "GET", url, kind="tags", scope=_scope(repo, "pull"), expect={200}, missing_ok=True
            )
            if resp is None:
                return tags
            tags.extend(resp.json().get("tags") or [])
            link = resp.links.get("next", {}).get("url")
            url = urljoin(resp.url, link) if link else None
        return tags

    # ---- transport ---------------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        kind: RequestKind,
        scope: str | None,
        expect: AbstractSet[int],
        missing_ok: bool = False,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        resend: bool = True,
    ) -> requests.Response | None:
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        self._authn.prepare(scope)

        def send(auth: Mapping[str, str]) -> requests.Response:
            return self.transport.send(
                method,
                url,
                kind=kind,
                headers={**(headers or {}), **auth},
                body=body,
                stream=stream,
                resend=resend,
            )

        sent = self._authn.header(scope)
        resp = send(sent)
        if resp.status_code == 401 and self._authn.on_challenge(resp, scope, sent=sent):
            resp.close()
            resp = send(self._authn.header(scope))
        if resp.status_code in expect:
            return resp
        if resp.status_code == 404 and missing_ok:
            resp.close()
            return None
        where = f"{method} {redact_url(url)}"
        detail = redact(registry_message(resp)) + challenge_words(resp)
        resp.close()
        if resp.status_code in (401, 403):
            raise RegistryError(f"{where}: {resp.status_code} {detail}", fix=self._credentials_fix())
        raise RegistryError(f"{where}: unexpected {resp.status_code} {detail}")

    def _credentials_fix(self) -> str:
        how = _CREDENTIAL_FIX[self.role].format(host=self.host)
        if self.credentials is None:
            return f"no credentials were given for {self.host}: {how}"
        return f"the credentials for {self.host} (user {self.credentials.username!r}) were refused or lack access: {how}"


class _UploadRefused(Exception):
    """The registry answered an upload's PUT with an error: the session is spent, the upload starts over."""


_ANY_STATUS = frozenset(range(100, 600))


def _scope(repo: str, actions: str) -> str:
    return f"repository:{repo}:{actions}"


def _content_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";")[0].strip()
