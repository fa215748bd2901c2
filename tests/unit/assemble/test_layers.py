"""ci_images.assemble.layers: what each COPY/ADD writes, and that the bytes depend on nothing but the inputs."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from ci_images.assemble.config import evaluate
from ci_images.assemble.dockerfile import DockerfileError, parse_dockerfile
from ci_images.assemble.layers import Layer, build_layers

EPOCH = 1_700_000_000
BASE = {"config": {"Env": ["PATH=/bin"], "WorkingDir": "/srv"}}


def make_context(root: Path, *, umask: int = 0o022) -> Path:
    """A context as a checkout with ``umask`` would leave it (modes follow the umask, as git's do)."""
    old = os.umask(umask)
    try:
        (root / "conf" / "nested").mkdir(parents=True)
        (root / "bin").mkdir()
        (root / "conf" / "app.yaml").write_text("a: 1\n", encoding="utf-8")
        (root / "conf" / "nested" / "deep.txt").write_text("deep\n", encoding="utf-8")
        (root / "conf" / "debug.log").write_text("ignored\n", encoding="utf-8")
        script = root / "bin" / "run.sh"
        script.write_text("#!/bin/sh\n", encoding="utf-8")
        script.chmod(0o777 & ~umask)
        (root / "conf" / "current").symlink_to("app.yaml")
        (root / "top-link").symlink_to("conf/app.yaml")
        (root / "notes.txt").write_text("notes\n", encoding="utf-8")
        (root / ".dockerignore").write_text("**/*.log\n", encoding="utf-8")
    finally:
        os.umask(old)
    return root


def layers_for(context: Path, body: str, out: Path, **args: str) -> list[Layer]:
    text = "FROM base\n" + body
    (context / "Dockerfile").write_text(text, encoding="utf-8")
    dockerfile = parse_dockerfile(text, path="Dockerfile")
    recipe = evaluate(dockerfile, BASE, args)
    return build_layers(dockerfile, context, recipe.copies, epoch=EPOCH, directory=out)


def entries(layer: Layer) -> list[tuple[str, str, str, int, int, str]]:
    """(path, type, mode, uid, gid, content or link) per member, in archive order."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
        for m in tar:
            assert (m.mtime, m.uname, m.gname) == (EPOCH, "", "")
            extracted = tar.extractfile(m) if m.isfile() else None
            content = extracted.read().decode() if extracted else m.linkname
            kind = "dir" if m.isdir() else "link" if m.issym() else "file"
            found.append((m.name, kind, oct(m.mode), m.uid, m.gid, content))
    return found


def test_a_directory_copies_its_contents_and_dockerignore_applies(tmp_path: Path) -> None:
    (layer,) = layers_for(make_context(tmp_path / "ctx"), "COPY conf /etc/app\n", tmp_path / "out")
    assert entries(layer) == [
        ("etc/app", "dir", "0o755", 0, 0, ""),
        ("etc/app/app.yaml", "file", "0o644", 0, 0, "a: 1\n"),
        ("etc/app/current", "link", "0o777", 0, 0, "app.yaml"),
        ("etc/app/nested", "dir", "0o755", 0, 0, ""),
        ("etc/app/nested/deep.txt", "file", "0o644", 0, 0, "deep\n"),
    ]


def test_destination_rules(tmp_path: Path) -> None:
    body = (
        "COPY notes.txt /opt/file\n"  # no slash, not a known directory: the file itself
        "COPY notes.txt /opt/dir/\n"  # a trailing slash: into it
        "COPY notes.txt rel\n"  # relative to WORKDIR /srv
        "COPY notes.txt .\n"  # the working directory is known to exist: into it
        "COPY bin/run.sh conf/app.yaml /many/\n"
        "COPY top-link /followed\n"  # a symlink source is followed; the name comes from the source
        "COPY conf/nested /srv\n"  # into a known directory: its owner and mode stay the base's
        "WORKDIR /work\n"
        "COPY notes.txt /work\n"
    )
    layers = layers_for(make_context(tmp_path / "ctx"), body, tmp_path / "out")
    assert [[e[:2] for e in entries(layer)] for layer in layers] == [
        [("opt/file", "file")],
        [("opt/dir/notes.txt", "file")],
        [("srv/rel", "file")],
        [("srv/notes.txt", "file")],
        [("many/app.yaml", "file"), ("many/run.sh", "file")],
        [("followed", "file")],
        [("srv/deep.txt", "file")],
        [("work/notes.txt", "file")],
    ]


def test_a_directory_an_earlier_copy_made_is_known(tmp_path: Path) -> None:
    layers = layers_for(
        make_context(tmp_path / "ctx"), "COPY conf /app/conf\nCOPY notes.txt /app/conf\n", tmp_path / "out"
    )
    assert [e[0] for e in entries(layers[1])] == ["app/conf/notes.txt"]


def test_wildcards_match_like_go_path_match(tmp_path: Path) -> None:
    body = "COPY conf/*.yaml conf/n?sted b[i]n /dst/\n"
    (layer,) = layers_for(make_context(tmp_path / "ctx"), body, tmp_path / "out")
    # a matched directory copies its contents (and makes the destination); ignored files never match
    assert [e[0] for e in entries(layer)] == ["dst", "dst/app.yaml", "dst/deep.txt", "dst/run.sh"]


def test_chown_and_chmod(tmp_path: Path) -> None:
    body = "COPY --chown=1000:2000 conf/nested /n\nCOPY --chown=7 --chmod=0600 bin /b/\n"
    first, second = layers_for(make_context(tmp_path / "ctx"), body, tmp_path / "out")
    assert {e[3:5] for e in entries(first)} == {(1000, 2000)}
    assert entries(second) == [
        ("b", "dir", "0o600", 7, 7, ""),
        ("b/run.sh", "file", "0o600", 7, 7, "#!/bin/sh\n"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "COPY notes.txt bin/run.sh /no-slash\n",
            "Dockerfile:2: When using COPY with more than one source file",
        ),
        ("COPY missing.txt /x\n", "Dockerfile:2: COPY failed: file not found in build context"),
        (
            "COPY conf/debug.log /x\n",
            "Dockerfile:2: COPY failed: file not found in build context or excluded",
        ),
        ("COPY nothing* /x/\n", "Dockerfile:2: COPY failed: no source files were specified"),
        ("COPY ../outside /x\n", "Dockerfile:2: COPY source ../outside is outside the build context"),
    ],
)
def test_what_the_builder_refuses(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        layers_for(make_context(tmp_path / "ctx"), body, tmp_path / "out")
    assert caught.value.message.startswith(message), caught.value.message


def test_a_symlink_out_of_the_context_is_refused(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    (tmp_path / "secret").write_text("s\n", encoding="utf-8")
    (context / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(DockerfileError, match="is a symlink out of the build context"):
        layers_for(context, "COPY escape /x\n", tmp_path / "out")


def test_the_dockerfile_is_always_sent_unless_dockerignore_names_it(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    (layer,) = layers_for(context, "COPY . /all/\n", tmp_path / "out1")
    names = [e[0] for e in entries(layer)]
    assert "all/Dockerfile" in names and "all/.dockerignore" in names and "all/conf/debug.log" not in names
    (context / ".dockerignore").write_text("**/*.log\nDockerfile\n.dockerignore\n", encoding="utf-8")
    (layer,) = layers_for(context, "COPY . /all/\n", tmp_path / "out2")
    names = [e[0] for e in entries(layer)]
    assert "all/Dockerfile" not in names and "all/.dockerignore" not in names


def test_the_same_bytes_whatever_the_umask_the_mtimes_and_the_run(tmp_path: Path) -> None:
    body = "COPY . /all/\nCOPY --chown=1 conf /c\n"
    digests = set()
    for number, umask in enumerate((0o022, 0o002, 0o077)):
        context = make_context(tmp_path / f"ctx{number}", umask=umask)
        for path in context.rglob("*"):
            os.utime(path, (1_000_000 * number, 1_000_000 * number), follow_symlinks=False)
        layers = layers_for(context, body, tmp_path / f"out{number}")
        digests.add(tuple((layer.diff_id, layer.digest, layer.size) for layer in layers))
    assert len(digests) == 1
    first = next((tmp_path / "out0").glob("*.tar.gz")).read_bytes()
    assert first[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip: no name, mtime 0


def test_the_layer_s_digests_describe_its_bytes(tmp_path: Path) -> None:
    (layer,) = layers_for(make_context(tmp_path / "ctx"), "COPY notes.txt /n\n", tmp_path / "out")
    blob = layer.path.read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert (layer.size, layer.path.name) == (
        len(blob),
        f"sha256-{layer.digest.removeprefix('sha256:')}.tar.gz",
    )
