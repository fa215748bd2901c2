"""``python -m ci_images``: the command line the nox sessions run (tasks.py calls ci_images.app directly)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from types import FrameType

from ci_images import app
from ci_images.errors import CiImagesError
from ci_images.log import log, redact


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", help="catalog file (default: $CI_IMAGES_CATALOG or ./images.yaml)")
    parser.add_argument(
        "--images",
        action="append",
        default=[],
        metavar="GLOB",
        help="only these images (glob; image/variant/version)",
    )
    parser.add_argument(
        "--registry", help="target prefix, e.g. ghcr.io/OWNER/REPO, or 'local' for 127.0.0.1:5000"
    )
    parser.add_argument(
        "--plain-http", action="store_true", help="talk plain HTTP to a loopback target registry"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug lines")


def _publishing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="rebuild and push even when up to date")
    parser.add_argument(
        "--dry-run", action="store_true", help="plan, build and smoke-test, but upload nothing"
    )
    parser.add_argument(
        "--json", dest="json_path", metavar="PATH", help="write one JSON record per entry to PATH"
    )
    parser.add_argument("--jobs", type=int, default=2, help="entries built in parallel (default 2)")
    parser.add_argument(
        "--fail-fast", action="store_true", help="stop starting entries after the first failure"
    )
    parser.add_argument(
        "--lock", dest="lock_path", metavar="PATH", help="lock file (default: the catalog's lock_file)"
    )
    parser.add_argument(
        "--ratelimit-min-remaining",
        type=int,
        metavar="N",
        help="stop starting upstream pulls when fewer remain (default: catalog, else 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ci_images", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list every (image, variant, version)")
    listing.add_argument("--json", action="store_true", dest="as_json")
    planned = sub.add_parser("plan", help="show what a push would build or skip, and why; changes nothing")
    planned.add_argument("--json", action="store_true", dest="as_json")
    build = sub.add_parser("build", help="build every entry for every platform")
    build.add_argument("--platform", action="append", default=[], dest="platforms")
    sub.add_parser("test", help="smoke-test what `build` left in the engine")
    push = sub.add_parser("push", help="build, smoke-test and push what changed")
    ci = sub.add_parser(
        "ci", help="the CI job: build and smoke-test; push with --push; --matrix prints a job matrix"
    )
    ci.add_argument("--push", action="store_true", help="also push (without it nothing leaves this machine)")
    ci.add_argument("--matrix", action="store_true", help="print the plan as a GitHub Actions matrix (JSON)")
    ci.add_argument(
        "--lock-only",
        action="store_true",
        help="only write the lock file from what the target holds (no builds)",
    )
    for p in (listing, planned, build, sub.choices["test"], push, ci):
        _common(p)
    for p in (push, ci):
        _publishing(p)
    for p in (build, sub.choices["test"]):
        p.add_argument(
            "--json", dest="json_path", metavar="PATH", help="write one JSON record per entry to PATH"
        )
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument("--fail-fast", action="store_true")
    return parser


def options_from(args: argparse.Namespace) -> app.Options:
    return app.Options(
        catalog=args.catalog,
        images=args.images,
        registry=args.registry,
        platforms=getattr(args, "platforms", []),
        force=getattr(args, "force", False),
        dry_run=getattr(args, "dry_run", False),
        jobs=getattr(args, "jobs", 2),
        fail_fast=getattr(args, "fail_fast", False),
        json_path=getattr(args, "json_path", None),
        lock_path=getattr(args, "lock_path", None),
        plain_http=args.plain_http,
        ratelimit_min_remaining=getattr(args, "ratelimit_min_remaining", None),
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """CI cancels a job with SIGTERM: turn it into KeyboardInterrupt so containers are removed on the way out."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def run_guarded(action: Callable[[], object], *, debug: bool) -> int:
    """Run ``action``; a CiImagesError becomes its message and exit code (traceback only with --debug)."""
    stop_on_sigterm()
    try:
        action()
    except CiImagesError as exc:
        if debug:
            sys.stderr.write(redact(traceback.format_exc()))
        log.error(exc.render())
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log.debug_enabled = args.debug
    options = options_from(args)

    def dispatch() -> object:
        if args.command == "list":
            return app.list_images(options, as_json=args.as_json)
        if args.command == "plan":
            return app.show_plan(options, as_json=args.as_json)
        if args.command == "build":
            return app.build_images(options)
        if args.command == "test":
            return app.test_images(options)
        if args.command == "ci" and args.matrix:
            result = app.matrix(options)
            sys.stdout.write(json.dumps(result) + "\n")
            log.set_output("matrix", json.dumps(result))
            return result
        if args.command == "ci" and args.lock_only:
            return app.write_lock_only(options)
        if args.command == "push" or (args.command == "ci" and args.push):
            return app.push_images(options)
        return app.build_images(options, smoke=True)

    return run_guarded(dispatch, debug=args.debug)
