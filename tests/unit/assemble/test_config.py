"""ci_images.assemble.config: the classic builder's semantics, instruction by instruction, on a base config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ci_images.assemble.config import Recipe, evaluate, image_config
from ci_images.assemble.dockerfile import parse_dockerfile

BASE: dict[str, Any] = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "created": "2020-01-01T00:00:00Z",
    "container_config": {"Cmd": ["/bin/sh"]},
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "HOME=/root"],
        "Entrypoint": ["/init"],
        "Cmd": ["serve", "--dev"],
        "WorkingDir": "/srv",
        "Labels": {"base": "yes", "shared": "base"},
        "ExposedPorts": {"80/tcp": {}},
        "Hostname": "",
        "Image": "sha256:00",
        "OnBuild": None,
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
    "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "base"}],
}


def run(
    body: str, base: Mapping[str, Any] = BASE, labels: Mapping[str, str] | None = None, **args: str
) -> Recipe:
    text = "ARG BASE_IMAGE=base\nFROM ${BASE_IMAGE}\n" + body
    return evaluate(parse_dockerfile(text, path="Dockerfile"), base, args, labels=labels)


def test_env_replaces_by_name_appends_new_names_and_expands_with_the_env_before_the_line() -> None:
    config = run("ENV HOME=/home/app A=1 B=\"$A $HOME\" \\\n    C='$A'\nENV D=$A\n").config
    assert config["Env"] == ["PATH=/usr/bin:/bin", "HOME=/home/app", "A=1", "B= /root", "C=$A", "D=1"]


def test_a_base_without_path_gets_the_default_one() -> None:
    config = run("ENV A=1\n", base={"config": {}}).config
    assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1"]


def test_args_defaults_build_args_and_meta_args() -> None:
    body = "ARG BASE_IMAGE\nARG UNSET\nARG GIVEN=default\nARG LATE=${GIVEN}\nENV V=${BASE_IMAGE}|${UNSET-u}|${GIVEN}|${LATE}\n"
    assert run(body).config["Env"][-1] == "V=base|u|default|default"
    assert run(body, GIVEN="given", BASE_IMAGE="other").config["Env"][-1] == "V=other|u|given|given"
    # an arg not declared in the stage does not expand, even when given; an ENV of the same name wins over an ARG
    assert run("ENV V=${NOT_DECLARED:-none}\n", NOT_DECLARED="x").config["Env"][-1] == "V=none"
    assert run("ARG HOME=/arg\nENV V=$HOME\n").config["Env"][-1] == "V=/root"
    # the proxy args are usable without ARG when given (buildargs.go builtinAllowedBuildArgs)
    assert run("ENV V=${HTTP_PROXY:-none}\n", HTTP_PROXY="http://p").config["Env"][-1] == "V=http://p"


def test_entrypoint_clears_the_inherited_cmd_unless_this_dockerfile_sets_one() -> None:
    assert "Cmd" not in run('ENTRYPOINT ["/app"]\n').config
    config = run('CMD ["x"]\nENTRYPOINT ["/app"]\n').config
    assert (config["Entrypoint"], config["Cmd"]) == (["/app"], ["x"])
    assert run('ENTRYPOINT ["/app"]\nCMD ["y"]\n').config["Cmd"] == ["y"]


def test_shell_forms_run_through_shell() -> None:
    config = run('CMD echo "$HOME"  now\nSHELL ["/bin/bash", "-euc"]\nENTRYPOINT exec app\n').config
    assert config["Cmd"] == ["/bin/sh", "-c", 'echo "$HOME"  now']  # not expanded: the shell does that
    assert config["Entrypoint"] == ["/bin/bash", "-euc", "exec app"]
    assert config["Shell"] == ["/bin/bash", "-euc"]
    assert "Entrypoint" not in run("ENTRYPOINT []\n").config


def test_workdir_is_relative_to_the_previous_one() -> None:
    assert run("WORKDIR app\nWORKDIR ../lib/./x\n").config["WorkingDir"] == "/srv/lib/x"
    assert run("ARG D=/opt\nWORKDIR $D\nWORKDIR sub\n").config["WorkingDir"] == "/opt/sub"
    assert (
        run("WORKDIR /abs/kept/\n").config["WorkingDir"] == "/abs/kept/"
    )  # normalizeWorkdir keeps it as written


def test_healthcheck_durations_are_nanoseconds() -> None:
    config = run(
        "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s --start-interval=1s --retries=4 "
        "CMD wget -q http://x/ || exit 1\n"
    ).config
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q http://x/ || exit 1"],
        "Interval": 90_000_000_000,
        "Timeout": 500_000_000,
        "StartPeriod": 2_000_000_000,
        "StartInterval": 1_000_000_000,
        "Retries": 4,
    }
    assert run('HEALTHCHECK CMD ["/bin/check", "--fast"]\n').config["Healthcheck"] == {
        "Test": ["CMD", "/bin/check", "--fast"]
    }
    assert run("HEALTHCHECK NONE\n").config["Healthcheck"] == {"Test": ["NONE"]}


def test_labels_merge_and_the_tool_s_labels_win() -> None:
    config = run(
        'LABEL shared=dockerfile "with space"="a b" k=$HOME\n', labels={"shared": "tool", "t": "1"}
    ).config
    assert config["Labels"] == {"base": "yes", "shared": "tool", "with space": "a b", "k": "/root", "t": "1"}


def test_expose_volume_user_stopsignal() -> None:
    config = run(
        "ARG P=9000\nEXPOSE $P/udp 8000-8001 127.0.0.1:5000:5000\n"
        'VOLUME /data $HOME\nVOLUME ["/cache"]\nUSER ${UID:-1000}:100\nSTOPSIGNAL SIGQUIT\n'
    ).config
    assert config["ExposedPorts"] == {
        p: {} for p in ("80/tcp", "9000/udp", "8000/tcp", "8001/tcp", "5000/tcp")
    }
    assert config["Volumes"] == {"/data": {}, "/root": {}, "/cache": {}}
    assert (config["User"], config["StopSignal"]) == ("1000:100", "SIGQUIT")


def test_only_image_config_fields_are_kept() -> None:
    assert set(run("ENV A=1\n").config) == {
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "Labels",
        "ExposedPorts",
    }


def test_copy_steps_are_expanded_and_relative_to_the_workdir() -> None:
    recipe = run("ARG D=conf\nWORKDIR /app\nCOPY --chown=1000 a b $D/\nADD --chmod=0750 ./x /abs\nCOPY y .\n")
    first, second, third = recipe.copies
    assert (first.sources, first.dest, first.chown, first.chmod) == (
        ("a", "b"),
        "/app/conf/",
        (1000, 1000),
        None,
    )
    assert (second.keyword, second.dest, second.chmod) == ("ADD", "/abs", 0o750)
    assert third.dest == "/app"
    assert first.known_dirs == ("/", "/srv", "/app")
    assert first.created_by == "COPY --chown=1000 a b conf/"


def test_history_lines_follow_buildkit_and_mark_metadata_steps_empty() -> None:
    recipe = run(
        "ARG V=1\nENV A=$V\nLABEL l=x\nEXPOSE 80\nCOPY a /a\nWORKDIR w\nUSER u\nVOLUME /v\nSTOPSIGNAL 9\n"
        'SHELL ["/bin/sh", "-c"]\nCMD ["a b", "c"]\nENTRYPOINT run it\nHEALTHCHECK --interval=10s CMD true\n'
    )
    assert [(h.created_by, h.empty_layer) for h in recipe.history] == [
        ("ARG V=1", True),
        ("ENV A=1", True),
        ("LABEL l=x", True),
        ("EXPOSE [80/tcp]", True),
        ("COPY a /a", False),
        ("WORKDIR /srv/w", True),
        ("USER u", True),
        ("VOLUME [/v]", True),
        ("STOPSIGNAL 9", True),
        ("SHELL [/bin/sh -c]", True),
        ('CMD ["a b" "c"]', True),
        ('ENTRYPOINT ["/bin/sh" "-c" "run it"]', True),
        (
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:10s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}",
            True,
        ),
    ]


def test_image_config_appends_history_and_layers_to_the_base_s() -> None:
    recipe = run("ENV A=1\nCOPY a /a\n")
    document = image_config(BASE, recipe, ["sha256:" + "2" * 64], epoch=1_700_000_000)
    assert document["created"] == "2023-11-14T22:13:20Z"
    assert (document["architecture"], document["variant"], document["os"]) == ("arm64", "v8", "linux")
    assert "container_config" not in document
    assert document["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "2" * 64]}
    assert document["history"][1:] == [
        {
            "created": "2023-11-14T22:13:20Z",
            "created_by": "ENV A=1",
            "comment": "ci-images assemble",
            "empty_layer": True,
        },
        {"created": "2023-11-14T22:13:20Z", "created_by": "COPY a /a", "comment": "ci-images assemble"},
    ]
    with pytest.raises(ValueError, match="0 layers for 1 COPY/ADD"):
        image_config(BASE, recipe, [], epoch=0)
