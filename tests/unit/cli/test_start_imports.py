"""A command's start imports what that command uses (issue 15's mirror goal is mostly start-up): the door loads no
command module, and the push path loads neither the docker SDK, nor the signing libraries, nor the assembly, until a
run needs them. Each check runs in a fresh interpreter, as a user's command starts."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "docker",
    "cryptography",
    "nacl",
    "ruamel",
    "dockerfile",
    "jwt",
    "boto3",
    "hvac",
    "ci_images.assemble",
    "ci_images.sign",
    "ci_images.smoke.probe",
    "ci_images.run.attestations",
)


def _loaded_after(*modules: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


def test_the_door_loads_no_command_and_no_library_a_command_needs() -> None:
    loaded = _loaded_after("ci_images.cli.argv")
    assert _heavy(loaded) == []
    assert sorted(m for m in loaded if m.startswith("ci_images.commands.")) == [
        "ci_images.commands.options",
        "ci_images.commands.values",
    ]
    assert "requests" not in loaded and "jsonschema" not in loaded


def test_the_push_path_loads_neither_the_engine_nor_signing_nor_the_assembly() -> None:
    assert (
        _heavy(_loaded_after("ci_images.cli.argv", "ci_images.commands.images", "ci_images.run.execute"))
        == []
    )
