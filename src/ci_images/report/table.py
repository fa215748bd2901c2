"""Reports for people: the terminal table (rich in a terminal, plain lines elsewhere), the GitHub step summary and
the step outputs a workflow reads."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ci_images.log import Logger, redact
from ci_images.oci import short_digest
from ci_images.run.result import CHANGING_ACTIONS, HELD_ACTIONS, Result


def _signing(results: Sequence[Result]) -> bool:
    return any(r.signature is not None for r in results)


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    signing = _signing(results)
    return [
        [r.image, r.variant, r.version, _action(r), r.reason, short_digest(r.digest), f"{r.duration_s:.1f}s"]
        + ([r.signed_text] if signing else [])
        for r in results
    ]


def _action(result: Result) -> str:
    """The action, and whether another writer moved some of its tags meanwhile (raced)."""
    return f"{result.action}, raced" if result.raced else result.action


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
            f"| {r.image} | {r.variant} | {r.version} | {icon} {_action(r)} | {reason} | `{short_digest(r.digest)}` | {r.duration_s:.1f}s |"
            + (f" {r.signed_text} |" if signing else "")
        )
    if ratelimit_remaining is not None:
        lines += ["", f"Upstream pull quota left: {ratelimit_remaining}"]
    # Redacted here too, not only by the logger: callers may write the summary elsewhere.
    return redact("\n".join(lines) + "\n")


def digests_output(results: Sequence[Result]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in results:
        if r.digest and r.action in HELD_ACTIONS and not r.dry_run:
            for tag in r.tags:
                raced = r.raced.get(tag)
                digest = r.digest if raced is None else raced.digest
                if digest:
                    out[tag] = digest
    return out


def publish_github(
    results: Sequence[Result], logger: Logger, *, title: str, ratelimit_remaining: int | None
) -> None:
    logger.step_summary(markdown_summary(results, title=title, ratelimit_remaining=ratelimit_remaining))
    logger.set_output("digests", json.dumps(digests_output(results), sort_keys=True))
    # The target changed: a tag now points elsewhere (not so after a dry run, or build-images, which has no digest).
    changed = any(r.action in CHANGING_ACTIONS and r.digest and not r.dry_run for r in results)
    logger.set_output("changed", "true" if changed else "false")
