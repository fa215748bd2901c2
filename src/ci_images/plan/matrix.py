"""The plan as a GitHub Actions job matrix (`nox -s ci-images -- --matrix`). Pure.

The workflows read exactly these fields (``matrix.image``, ``matrix.entries``); tests/unit/test_workflows.py checks
that every field a workflow reads is one this makes.

An entry the plan could not resolve (``error``) still gets a job, so that an image the change adds, whose package
does not exist yet, is built: GHCR answers an anonymous read of a package that does not exist exactly as one of a
private package (401/403 "denied"). But when no entry at all could be planned, the target (or upstream) could not be
read, and a matrix of every entry would build everything on every pull request: that is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ci_images.errors import PlanError
from ci_images.plan.decide import Decision

FIELDS = ("image", "entries")

UNREADABLE_FIX = (
    "if the target answered 401/403, its packages are private (GHCR makes every package private on its first "
    "publish) or the plan has no access: make each package public and link it to this repository (README: "
    "'Publishing to GHCR the first time'), or give the plan credentials for the target; otherwise see the reason"
)


def job_matrix(decisions: Sequence[Decision]) -> dict[str, list[dict[str, Any]]]:
    """One job per image with work to do: its name and the keys of its entries that are not skipped.

    PlanError when every entry failed to plan: "cannot read the target" is never "build everything"."""
    failed = [d for d in decisions if d.action == "error"]
    if failed and len(failed) == len(decisions):
        codes = {d.error_code for d in failed if d.error_code is not None}
        raise PlanError(
            f"none of the {len(decisions)} entries could be planned, and a matrix of all of them would build "
            f"everything; the first ({failed[0].entry.key}): {failed[0].reason}",
            fix=UNREADABLE_FIX,
            exit_code=codes.pop() if len(codes) == 1 else None,
        )
    include: dict[str, dict[str, Any]] = {}
    for d in decisions:
        if d.action == "skip":
            continue
        job = include.setdefault(d.entry.image, {"image": d.entry.image, "entries": []})
        job["entries"].append(d.entry.key)
    return {"include": list(include.values())}
