"""Reports for people (terminal table, GitHub step summary) and machines (JSON records, outputs, the lock file)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images.log import Logger, redact
from ci_images.plan.decide import Decision

if TYPE_CHECKING:
    from ci_images.sign.signer import SignOutcome  # signing modules load only when a run signs

CHANGING_ACTIONS = frozenset({"built", "mirrored", "retagged"})
# Actions after which the target's tags hold the result's digest (the lock file and step outputs record them).
HELD_ACTIONS = frozenset({"built", "mirrored", "skipped", "retagged"})


@dataclass(frozen=True)
class Result:
    image: str
    variant: str
    version: str
    action: str  # built, mirrored, skipped, retagged, failed, tested (test-images), planned
    reason: str
    tags: tuple[str, ...]
    digest: str | None
    source_digest: str | None
    platforms: tuple[str, ...]
    duration_s: float = 0.0
    ratelimit_remaining: int | None = None
    previous_digests: Mapping[str, str | None] = field(default_factory=dict)
    smoked: Sequence[str] = ()
    error: str | None = None  # the whole error text, fix included, of a failed entry
    exit_code: int | None = None  # that error's exit code
    tags_moved: tuple[str, ...] = ()  # when moving tags stopped part-way: those that moved ...
    tags_not_moved: tuple[str, ...] = ()  # ... and those that did not (the next run moves them)
    source: str = ""
    signature: SignOutcome | None = (
        None  # how the digest is signed after this run (push-images with a signer)
    )
    copy: Mapping[str, Any] | None = None  # a mirror's copy: exact or not, upstream's digest, what moved
    dry_run: bool = False  # push-images --dry-run: built and smoke-tested, the target left as it was

    @classmethod
    def from_decision(cls, decision: Decision, *, ratelimit_remaining: int | None = None) -> Result:
        entry = decision.entry
        held = decision.current.platforms
        # An entry left as it is (or only retagged) has the platforms the target holds; the catalog may say "all".
        platforms = held if decision.action in ("skip", "retag") and held else entry.platform_names
        return cls(
            image=entry.image,
            variant=entry.variant,
            version=entry.version,
            action="planned",
            reason=decision.reason,
            tags=entry.tag_refs,
            digest=decision.current.digest,
            source_digest=decision.source_digest,
            platforms=tuple(platforms),
            ratelimit_remaining=ratelimit_remaining,
            source=entry.source_ref,
        )

    @property
    def key(self) -> str:
        return f"{self.image}/{self.variant}/{self.version}"

    @property
    def previous_digest(self) -> str | None:
        """What the version tag held before this run moved it (None: new, or not moved)."""
        if not self.tags:
            return None
        # previous_digests is keyed by tag name; a retag may move only the aliases, so do not take the first.
        return self.previous_digests.get(self.tags[0].rsplit(":", 1)[1])

    def as_record(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "variant": self.variant,
            "version": self.version,
            "action": self.action,
            "reason": redact(self.reason),
            "tags": list(self.tags),
            "digest": self.digest,
            "previous_digest": self.previous_digest,
            "previous_digests": {
                f"{self.tags[0].rsplit(':', 1)[0]}:{t}": d for t, d in self.previous_digests.items()
            }
            if self.tags
            else {},
            "source_digest": self.source_digest,
            "platforms": list(self.platforms),
            "smoke_tested": list(self.smoked),
            "duration_s": self.duration_s,
            "ratelimit_remaining": self.ratelimit_remaining,
            "error": redact(self.error) if self.error else None,
            "exit_code": self.exit_code,
            "tags_moved": list(self.tags_moved),
            "tags_not_moved": list(self.tags_not_moved),
            "signature": self.signature.as_record() if self.signature else None,
            "copy": dict(self.copy) if self.copy is not None else None,
            "dry_run": self.dry_run,
        }

    @property
    def signed_text(self) -> str:
        """The table's "signed" cell: new (signed by this run), yes (was signed already), - (not signed)."""
        if self.signature is None:
            return "-"
        return "new" if self.signature.signed else "yes"


def _short(digest: str | None) -> str:
    return digest.split(":", 1)[-1][:12] if digest else "-"


def _signing(results: Sequence[Result]) -> bool:
    return any(r.signature is not None for r in results)


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    signing = _signing(results)
    return [
        [r.image, r.variant, r.version, r.action, r.reason, _short(r.digest), f"{r.duration_s:.1f}s"]
        + ([r.signed_text] if signing else [])
        for r in results
    ]


HEADERS = ["image", "variant", "version", "action", "reason", "digest", "duration"]


def headers(results: Sequence[Result]) -> list[str]:
    """The table's columns: "signed" only when the run signed (so unsigned runs look as they always did)."""
    return [*HEADERS, "signed"] if _signing(results) else list(HEADERS)


def print_table(
    results: Sequence[Result], logger: Logger, *, ratelimit: tuple[int | None, int | None] = (None, None)
) -> None:
    remaining, limit = ratelimit
    quota = f"upstream pull quota: {remaining} of {limit} left" if remaining is not None else ""
    if logger.interactive:
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers(results), title="ci-images", caption=quota or None)
        for row in table_rows(results):
            table.add_row(*(redact(c) for c in row))
        Console(file=logger.stream).print(table)
        return
    columns = headers(results)
    widths = [
        max(len(h), *(len(row[i]) for row in table_rows(results))) if results else len(h)
        for i, h in enumerate(columns)
    ]
    logger.info("  ".join(h.ljust(w) for h, w in zip(columns, widths, strict=True)))
    for row in table_rows(results):
        logger.info("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if quota:
        logger.info(quota)


def markdown_summary(results: Sequence[Result], *, title: str, ratelimit_remaining: int | None) -> str:
    signing = _signing(results)
    lines = [
        f"### {title}",
        "",
        "| image | variant | version | action | reason | digest | duration |"
        + (" signed |" if signing else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if signing else ""),
    ]
    for r in results:
        icon = {"failed": "❌", "built": "✅", "mirrored": "✅", "retagged": "🔁", "skipped": "⏭️"}.get(
            r.action, ""
        )
        reason = r.reason.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r.image} | {r.variant} | {r.version} | {icon} {r.action} | {reason} | `{_short(r.digest)}` | {r.duration_s:.1f}s |"
            + (f" {r.signed_text} |" if signing else "")
        )
    if ratelimit_remaining is not None:
        lines += ["", f"Upstream pull quota left: {ratelimit_remaining}"]
    # Redacted here too, not only by the logger: callers may write the summary elsewhere.
    return redact("\n".join(lines) + "\n")


def write_json(path: Path, results: Sequence[Result]) -> None:
    atomic_write(path, json.dumps([r.as_record() for r in results], indent=2) + "\n")


def digests_output(results: Sequence[Result]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in results:
        if r.digest and r.action in HELD_ACTIONS and not r.dry_run:
            for tag in r.tags:
                out[tag] = r.digest
    return out


def publish_github(
    results: Sequence[Result], logger: Logger, *, title: str, ratelimit_remaining: int | None
) -> None:
    logger.step_summary(markdown_summary(results, title=title, ratelimit_remaining=ratelimit_remaining))
    logger.set_output("digests", json.dumps(digests_output(results), sort_keys=True))
    # The target changed: a tag now points elsewhere (not so after a dry run, or build-images, which has no digest).
    changed = any(r.action in CHANGING_ACTIONS and r.digest and not r.dry_run for r in results)
    logger.set_output("changed", "true" if changed else "false")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all at once (a reader sees the old or the new file, never half); the temporary file
    is removed when anything goes wrong."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)  # a file written again keeps its mode
    except FileNotFoundError:
        mode = 0o666 & ~_umask()  # a new one gets what open() would give it (mkstemp's is 0600)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, which another thread could notice)."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
