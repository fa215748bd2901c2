"""Carry out a Dockerfile's metadata instructions on the base's image config, as Docker's classic builder does.

The semantics are moby/moby's classic builder (``builder/dockerfile/dispatchers.go``, ``evaluator.go``,
``buildargs.go``, ``internals.go``; v20.10, the engine this project drives), instruction by instruction:

- expansion happens before an instruction runs, with the config's Env plus the build args declared so far (an ENV
  of the same name wins); ENV, LABEL, COPY/ADD, WORKDIR, USER, VOLUME, STOPSIGNAL, ARG and EXPOSE expand,
  CMD, ENTRYPOINT, HEALTHCHECK and SHELL do not; FROM expands with the args declared before it;
- ``ENV`` replaces a variable by name or appends it; the base gets ``PATH`` when it has none (setDefaultPath);
- ``CMD``/``ENTRYPOINT`` in shell form run through ``SHELL`` (default ``/bin/sh -c``); an ENTRYPOINT clears the
  inherited Cmd unless this Dockerfile sets CMD;
- ``WORKDIR`` is relative to the previous one; ``EXPOSE``, ``VOLUME`` and ``LABEL`` add to what the base has;
- ``HEALTHCHECK`` durations are nanoseconds; the shell form is ``CMD-SHELL``, ``NONE`` disables the base's check.

History lines follow BuildKit's wording (``frontend/dockerfile/dockerfile2llb/convert.go``: ``ENV K=V``,
``COPY src dest``, ``CMD ["a" "b"]``...): the classic builder's ``/bin/sh -c #(nop)`` lines embed its context hashes,
which nothing else can recompute. WORKDIR is a metadata step here (``empty_layer``): the classic builder commits
the directory in a layer of its own, but writing one without seeing the base's filesystem could overwrite an existing
directory's owner and mode; the engine creates a missing working directory when a container starts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ci_images.assemble.dockerfile import (
    Blocker,
    Dockerfile,
    DockerfileError,
    Instruction,
    NotAssemblable,
    static_blocker,
)
from ci_images.assemble.recipe import HISTORY_COMMENT, BuildArgs, Recipe, rfc3339
from ci_images.assemble.shell import ExpansionError, process_word
from ci_images.assemble.stage import Stage

__all__ = ["Recipe", "evaluate", "image_config"]


def _meta_arg(dockerfile: Dockerfile, instruction: Instruction, args: BuildArgs) -> None:
    """An ARG before FROM (processMetaArg): expanded with the args declared so far, usable by FROM and by ARGs in
    the stage."""
    env = args.all_allowed()  # every arg of the line expands with the args declared before it
    for arg in instruction.args:
        key, has_default, default = arg.partition("=")
        try:
            key = process_word(key, env, escape=dockerfile.escape)
            value = process_word(default, env, escape=dockerfile.escape) if has_default else None
        except ExpansionError as exc:
            raise DockerfileError(f"{dockerfile.where(instruction)}: ARG: {exc}") from None
        args.allowed[key] = value
        args.meta[key] = value


def evaluate(
    dockerfile: Dockerfile,
    base_config: Mapping[str, Any],
    build_args: Mapping[str, str],
    *,
    labels: Mapping[str, str] | None = None,
) -> Recipe:
    """Carry out ``dockerfile`` on ``base_config`` (the base image's config JSON, parsed) with ``build_args``;
    ``labels`` (the tool's own) are set last and win, as the classic builder's ``--label`` options do.

    Raises NotAssemblable (with file:line) where the engine must build, DockerfileError where it would fail too.
    """
    blocker = static_blocker(dockerfile)
    if blocker is not None:
        raise NotAssemblable(blocker)
    args = BuildArgs(given=dict(build_args))
    instructions = list(dockerfile.instructions)
    while instructions[0].keyword == "ARG":
        _meta_arg(dockerfile, instructions.pop(0), args)
    from_instruction = instructions.pop(0)
    try:
        base_name = process_word(from_instruction.args[0], args.all_meta(), escape=dockerfile.escape)
    except ExpansionError as exc:
        raise DockerfileError(f"{dockerfile.where(from_instruction)}: FROM: {exc}") from None
    if not base_name:
        raise DockerfileError(
            f"{dockerfile.where(from_instruction)}: base name ({from_instruction.args[0]}) should not be blank",
            fix="pass the build arg the FROM line names",
        )
    triggers = (base_config.get("config") or {}).get("OnBuild") or []
    if triggers:
        raise NotAssemblable(
            Blocker(
                dockerfile.path,
                from_instruction.line,
                "FROM",
                f"names a base with {len(triggers)} ONBUILD trigger(s), which run at build time",
            )
        )
    args.allowed = {}  # a stage starts with no declared args (newDispatchState: ResetAllowed)
    stage = Stage(dockerfile, base_config, args)
    for instruction in instructions:
        stage.dispatch(instruction)
    if labels:
        merged = stage.config.setdefault("Labels", {})
        for key in sorted(labels):
            merged[key] = labels[key]
    config = {k: v for k, v in stage.config.items() if v not in (None, "", [], {}, False)}
    return Recipe(base_name, config, tuple(stage.history), tuple(stage.copies))


def image_config(
    base_config: Mapping[str, Any], recipe: Recipe, diff_ids: Sequence[str], *, epoch: int
) -> dict[str, Any]:
    """The new image config (parsed JSON): the base's platform fields, ``recipe``'s config, the base's history and
    rootfs with this build's appended (``diff_ids``: one per COPY/ADD, in order), ``created`` = ``epoch``."""
    layered = [step for step in recipe.history if not step.empty_layer]
    if len(layered) != len(diff_ids):
        raise ValueError(f"{len(diff_ids)} layers for {len(layered)} COPY/ADD steps")
    created = rfc3339(epoch)
    document: dict[str, Any] = {
        key: copy.deepcopy(base_config[key])
        for key in ("architecture", "os", "os.version", "os.features", "variant")
        if base_config.get(key)
    }
    history = list(copy.deepcopy(base_config.get("history") or []))
    for step in recipe.history:
        entry: dict[str, Any] = {
            "created": created,
            "created_by": step.created_by,
            "comment": HISTORY_COMMENT,
        }
        if step.empty_layer:
            entry["empty_layer"] = True
        history.append(entry)
    rootfs = base_config.get("rootfs") or {}
    document.update(
        {
            "config": copy.deepcopy(dict(recipe.config)),
            "created": created,
            "history": history,
            "rootfs": {"type": "layers", "diff_ids": [*(rootfs.get("diff_ids") or []), *diff_ids]},
        }
    )
    return document
