"""Where a command probe's client image is pulled from in a run: Docker Hub's through the upstream mirror."""

from __future__ import annotations

import pytest

from ci_images.run.clients import mirrored, split_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "mirror", "expected"),
    [
        # Docker Hub, however it is written: through the mirror, tag and digest kept.
        ("redis:7.2", "mirror.test:5000", ("mirror.test:5000/library/redis:7.2", True)),
        (
            f"docker.io/library/redis:7.2@{DIGEST}",
            "mirror.test",
            (f"mirror.test/library/redis:7.2@{DIGEST}", True),
        ),
        (
            f"cilab/demo-service@{DIGEST}",
            "127.0.0.1:5001",
            (f"127.0.0.1:5001/cilab/demo-service@{DIGEST}", True),
        ),
        ("index.docker.io/acme/client", "mirror.test", ("mirror.test/acme/client", True)),
        # No mirror: Docker Hub itself, still with the upstream credentials and budget.
        ("redis:7.2", None, ("docker.io/library/redis:7.2", True)),
        # Another registry: as written, the engine's own login.
        ("ghcr.io/acme/client:1", "mirror.test", ("ghcr.io/acme/client:1", False)),
        ("127.0.0.1:5000/acme/client:1", "mirror.test", ("127.0.0.1:5000/acme/client:1", False)),
    ],
)
def test_docker_hub_clients_come_through_the_mirror(
    image: str, mirror: str | None, expected: tuple[str, bool]
) -> None:
    assert mirrored(image, mirror) == expected


def test_a_reference_splits_as_the_engine_reads_it() -> None:
    ref = split_reference(f"localhost:5000/team/client:v1.2@{DIGEST}")
    assert (str(ref.repository), ref.tag, ref.digest) == ("localhost:5000/team/client", "v1.2", DIGEST)
    ref = split_reference("127.0.0.1:5000/client")  # the port's colon is not a tag
    assert (ref.repository.host, ref.repository.path, ref.tag, ref.digest) == (
        "127.0.0.1:5000",
        "client",
        None,
        None,
    )
