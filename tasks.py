"""Invoke tasks: thin doors onto ci_images.app. `invoke --list` shows them; `invoke --help TASK` their options."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

sys.path.insert(0, str(Path(__file__).parent / "src"))  # a checkout works without `pip install -e .`

try:
    from ci_images import app
    from ci_images.cli import stop_on_sigterm
    from ci_images.errors import CiImagesError
    from ci_images.log import log
except ImportError as exc:  # pragma: no cover - only without the dependencies
    raise SystemExit(f"ci-images needs its dependencies: pip install -e . ({exc})") from exc

COMMON_HELP = {
    "catalog": "catalog file (default: $CI_IMAGES_CATALOG or ./images.yaml)",
    "images": "only these images: glob on image, image/variant/version or image:version (repeatable)",
    "registry": "target prefix (ghcr.io/OWNER/REPO), or 'local' for an embedded registry on 127.0.0.1:5000",
    "debug": "show tracebacks",
}
PUBLISH_HELP = {
    **COMMON_HELP,
    "force": "rebuild and push even when up to date",
    "dry_run": "plan, build and smoke-test, but upload nothing",
    "json": "write one JSON record per entry to this path",
    "jobs": "entries built in parallel (default 2)",
    "fail_fast": "stop starting entries after the first failure",
    "lock": "lock file path (default: the catalog's lock_file, images.lock.json)",
    "plain_http": "talk plain HTTP to a loopback target registry",
    "ratelimit_min_remaining": "stop starting upstream pulls when fewer remain (default: catalog, else 10)",
}


@contextmanager
def _door(debug: bool = False) -> Iterator[None]:
    """Turn the tool's errors into invoke's Exit with the error's exit code."""
    log.debug_enabled = debug
    stop_on_sigterm()
    try:
        yield
    except CiImagesError as exc:
        if debug:
            raise
        raise Exit(f"error: {exc.render()}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("interrupted", code=130) from None


def _options(**kwargs: object) -> app.Options:
    return app.Options(**{k: v for k, v in kwargs.items() if v is not None})  # type: ignore[arg-type]


@task(
    help={
        **COMMON_HELP,
        "json": "print a JSON array (image, variant, version, mode, source, tags, platforms)",
    },
    iterable=["images"],
)
def list_images(
    c: Context,
    json: bool = False,
    catalog: str | None = None,
    images: list[str] | None = None,
    registry: str | None = None,
    debug: bool = False,
) -> None:
    """List every (image, variant, version) of the catalog with its source, target tags and platforms."""
    with _door(debug):
        app.list_images(_options(catalog=catalog, images=images or [], registry=registry), as_json=json)


@task(help={**COMMON_HELP, "json": "print the plan as JSON"}, iterable=["images"])
def plan(
    c: Context,
    json: bool = False,
    catalog: str | None = None,
    images: list[str] | None = None,
    registry: str | None = None,
    debug: bool = False,
) -> None:
    """Show what push-images would build, retag or skip, and why. Sends only HEAD requests upstream; changes nothing."""
    with _door(debug):
        app.show_plan(_options(catalog=catalog, images=images or [], registry=registry), as_json=json)


@task(
    help={
        **{k: COMMON_HELP[k] for k in ("catalog", "images", "debug")},
        "platform": "build only this platform (repeatable; default: the catalog's)",
    },
    iterable=["images", "platform"],
)
def build_images(
    c: Context,
    images: list[str] | None = None,
    platform: list[str] | None = None,
    catalog: str | None = None,
    debug: bool = False,
) -> None:
    """Build every (image, variant, version) for every platform; the host's build is tagged with the target tags."""
    with _door(debug):
        app.build_images(_options(catalog=catalog, images=images or [], platforms=platform or []))


@task(help={k: COMMON_HELP[k] for k in ("catalog", "images", "debug")}, iterable=["images"])
def test_images(
    c: Context, images: list[str] | None = None, catalog: str | None = None, debug: bool = False
) -> None:
    """Smoke-test the images build-images made, on every platform this host can run (boto3 for KMS, hvac for Vault)."""
    with _door(debug):
        app.test_images(_options(catalog=catalog, images=images or []))


@task(help=PUBLISH_HELP, iterable=["images"])
def push_images(
    c: Context,
    images: list[str] | None = None,
    registry: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    json: str | None = None,
    jobs: int = 2,
    fail_fast: bool = False,
    catalog: str | None = None,
    lock: str | None = None,
    plain_http: bool = False,
    ratelimit_min_remaining: str | None = None,
    debug: bool = False,
) -> None:
    """Build, smoke-test and push what changed as multi-arch indexes; tags move only after full success."""
    if ratelimit_min_remaining is not None and not ratelimit_min_remaining.isdigit():
        raise Exit(
            f"error: --ratelimit-min-remaining must be a whole number, not {ratelimit_min_remaining!r}",
            code=2,
        )
    with _door(debug):
        app.push_images(
            _options(
                catalog=catalog,
                images=images or [],
                registry=registry,
                force=force,
                dry_run=dry_run,
                json_path=json,
                jobs=jobs,
                fail_fast=fail_fast,
                lock_path=lock,
                plain_http=plain_http,
                ratelimit_min_remaining=int(ratelimit_min_remaining) if ratelimit_min_remaining else None,
            )
        )


def _print_env(env: dict[str, str], secret_dir: Path) -> None:
    """Print `export` lines for eval; the password is read from a 0600 file rather than printed."""
    for key, value in env.items():
        if key.endswith("_PASSWORD"):
            secret_dir.mkdir(parents=True, exist_ok=True)
            path = secret_dir / key.lower()
            path.touch(mode=0o600)
            path.write_text(value, encoding="utf-8")
            print(f'export {key}="$(cat {shlex.quote(str(path))})"')
        else:
            print(f"export {key}={shlex.quote(value)}")


@task(
    help={
        "workdir": "where the lab keeps its state (default: ~/.cache/ci-images/lab-run)",
        "catalog": COMMON_HELP["catalog"],
    }
)
def lab_up(c: Context, workdir: str | None = None, catalog: str | None = None, debug: bool = False) -> None:
    """Start the hermetic image lab (TLS registries, stand-in upstream images) and print the environment to export."""
    from ci_images.engine.dockerd import ensure_engine
    from ci_images.lab import lab

    with _door(debug):
        ensure_engine()
        standins, platforms = app.lab_standins(_options(catalog=catalog))
        folder = Path(workdir) if workdir else app.lab_workdir()
        started = lab.lab_up(folder, standins=standins, platforms=platforms)
        _print_env(started.env(), folder)


@task(
    help={
        "workdir": "the lab's state folder (default: ~/.cache/ci-images/lab-run)",
        "debug": COMMON_HELP["debug"],
    }
)
def lab_down(c: Context, workdir: str | None = None, debug: bool = False) -> None:
    """Stop the lab started by lab-up and remove its registries' data."""
    from ci_images.lab import lab

    with _door(debug):
        lab.lab_down(Path(workdir) if workdir else app.lab_workdir())


@task(help={"debug": COMMON_HELP["debug"]})
def registry_down(c: Context, debug: bool = False) -> None:
    """Stop the embedded 'local' registry (127.0.0.1:5000); its data stays in the cache folder."""
    from ci_images.cache import cache_home
    from ci_images.loopback.local import stop_local_registry

    with _door(debug):
        stopped = stop_local_registry(cache_home())
        print("stopped the local registry" if stopped else "no local registry was running")
