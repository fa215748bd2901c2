"""How a command ends: its JSON records (--json), the report of a run (table, GitHub summary and outputs), and the
rule that turns failed entries into the command's exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ci_images.commands.options import Options
from ci_images.errors import EntriesFailed, TagsRaced
from ci_images.log import log
from ci_images.plan.decide import Decision
from ci_images.report import table
from ci_images.report.files import atomic_write
from ci_images.run.context import Context
from ci_images.run.result import Result


def emit_json(options: Options, records: object) -> bool:
    """Write ``records`` as --json asked: True when they went to standard output (instead of the human output)."""
    if not options.json_path:
        return False
    text = json.dumps(records, indent=2) + "\n"
    if options.json_path == "-":
        sys.stdout.write(text)
        return True
    atomic_write(Path(options.json_path), text)
    return False


def raise_unresolved(decisions: Sequence[Decision]) -> None:
    """EntriesFailed when entries could not be planned: their own exit code when they share one, else 8."""
    failed = [d for d in decisions if d.action == "error"]
    if failed:
        codes = {d.error_code for d in failed if d.error_code is not None}
        raise EntriesFailed(
            f"{len(failed)} of {len(decisions)} entries could not be planned: "
            + ", ".join(d.entry.key for d in failed),
            fix="see each entry's reason above",
            exit_code=codes.pop() if len(codes) == 1 else None,
        )


def finish(results: Sequence[Result], ctx: Context, options: Options, *, title: str) -> None:
    """Report the run (table, --json, GitHub); raise the interrupt that stopped it, or EntriesFailed with the right
    exit code when entries failed: the failures' own code when every entry failed with one, else 8; or, with no
    failure, TagsRaced (12) when another writer moved tags this run had just moved."""
    table.print_table(results, log, ratelimit=(ctx.budget.remaining, ctx.budget.limit))
    emit_json(options, [r.as_record() for r in results])
    if log.github:
        table.publish_github(results, log, title=title, ratelimit_remaining=ctx.budget.remaining)
    if ctx.interrupted is not None:
        raise ctx.interrupted
    failed = [r for r in results if r.action == "failed"]
    if failed:
        codes = {r.exit_code for r in failed if r.exit_code is not None}
        went_through = len(failed) < len(results)
        raise EntriesFailed(
            f"{len(failed)} of {len(results)} entries failed: {', '.join(r.key for r in failed)}",
            fix="see the errors above; entries that failed kept their previous tags",
            exit_code=codes.pop() if len(codes) == 1 and not went_through else None,
        )
    raced = [tag for r in results for tag in r.raced]
    if raced:
        raise TagsRaced(
            f"{len(raced)} tag(s) moved by another writer while this run moved them: {', '.join(raced)}",
            fix="another run (or a person) published to this target at the same time; every tag holds a complete "
            "index and the lock file records what the registry holds; run again, alone, to move each entry's tags "
            "together",
        )
