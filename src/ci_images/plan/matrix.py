"""The plan as a GitHub Actions job matrix (`nox -s ci-images -- --matrix`). Pure.

The workflows read exactly these fields (``matrix.image``, ``matrix.entries``); tests/unit/test_workflows.py checks
that every field a workflow reads is one this makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ci_images.plan.decide import Decision

FIELDS = ("image", "entries")


def job_matrix(decisions: Sequence[Decision]) -> dict[str, list[dict[str, Any]]]:
    """One job per image with work to do: its name and the keys of its entries that are not skipped."""
    include: dict[str, dict[str, Any]] = {}
    for d in decisions:
        if d.action == "skip":
            continue
        job = include.setdefault(d.entry.image, {"image": d.entry.image, "entries": []})
        job["entries"].append(d.entry.key)
    return {"include": list(include.values())}
