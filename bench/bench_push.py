"""Benchmark: a no-change `push-images` run against the naive weekly loop (pull, build FROM source, push everything;
mirrors: pull, tag, push).

Both run in one process against the same lab (stand-in upstream, TLS target with auth), so the ratios compare like
with like. Upstream manifest GETs are counted from the upstream registry's own request log. Prints a table and the
ratios; exits non-zero if the no-change/naive time ratio misses the goal (<= 0.1) so CI can watch it.

    nox -s bench -- push    # or: python bench/bench_push.py [--catalog images.yaml] [--keep-lab]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import arguments, manifest_gets, writes

from ci_images.commands import images as image_commands
from ci_images.commands.options import PUSH, Options, parse_options
from ci_images.commands.setup import prepare
from ci_images.engine.client import Engine
from ci_images.lab import lab
from ci_images.lab.cli import standins_for
from ci_images.run.build import local_ref

GOAL = 0.1


def naive_loop(the_lab: Any, options: Options) -> None:
    """What the weekly workflow this replaces does: for every entry and platform, pull the source tag, build
    `FROM source:version`, and push under the target tag; no plan, no digests, no skipping."""
    engine = Engine.connect()
    engine.client.login(
        username=the_lab.target.username,
        password=the_lab.target.password,
        registry=the_lab.target.host,
        reauth=True,
    )
    with prepare(options) as setup:
        entries = setup.entries
    for entry in entries:
        for platform in entry.platforms or the_lab.platforms:
            engine.client.images.pull(str(entry.pull), tag=entry.version, platform=platform)
            tag = f"{entry.tags[0]}-naive-{platform.replace('/', '-')}"
            if entry.context is None:  # a mirror: pull, tag, push
                engine.tag(entry.pull_ref, entry.target.with_tag(tag))
                for line in engine.client.images.push(str(entry.target), tag=tag, stream=True, decode=True):
                    if "error" in line:
                        raise RuntimeError(line["error"])
                continue
            engine.build(
                entry.context,
                tag=local_ref(entry, platform) + "-naive",
                platform=platform,
                buildargs={**entry.build_args, "BASE_IMAGE": entry.pull_ref},
                labels={},
            )
            engine.tag(local_ref(entry, platform) + "-naive", entry.target.with_tag(tag))
            for line in engine.client.images.push(str(entry.target), tag=tag, stream=True, decode=True):
                if "error" in line:
                    raise RuntimeError(line["error"])


def main() -> int:
    args = arguments(__doc__)

    standins, platforms, narrowed = standins_for(Path(args.catalog))
    workdir = Path(tempfile.mkdtemp(prefix="ci-images-bench-"))
    print(f"lab: starting in {workdir} ...", flush=True)
    the_lab = lab.lab_up(workdir, standins=standins, platforms=platforms, narrowed=narrowed)
    try:
        env = {**the_lab.env(), "CI": "true"}
        options: Options = parse_options(
            PUSH, {"catalog": args.catalog, "lock": str(workdir / "images.lock.json"), "jobs": "2"}, env
        )
        print("warm-up: first push publishes everything ...", flush=True)
        image_commands.push_images(options)

        up0, tg0 = len(the_lab.upstream.requests()), len(the_lab.target.requests())
        started = time.monotonic()
        results = image_commands.push_images(options)
        no_change_s = time.monotonic() - started
        up1, tg1 = len(the_lab.upstream.requests()), len(the_lab.target.requests())
        skipped = sum(1 for r in results if r.action == "skipped")

        started = time.monotonic()
        naive_loop(the_lab, options)
        naive_s = time.monotonic() - started
        up2, tg2 = len(the_lab.upstream.requests()), len(the_lab.target.requests())

        no_change_gets = manifest_gets(the_lab.upstream.requests()[up0:up1])
        naive_gets = manifest_gets(the_lab.upstream.requests()[up1:up2])
        rows = [
            ("run", "seconds", "upstream manifest GETs", "target writes"),
            (
                "no-change push-images",
                f"{no_change_s:.1f}",
                str(no_change_gets),
                str(writes(the_lab.target.requests()[tg0:tg1])),
            ),
            (
                "naive pull-build-push",
                f"{naive_s:.1f}",
                str(naive_gets),
                str(writes(the_lab.target.requests()[tg1:tg2])),
            ),
        ]
        for row in rows:
            print(f"{row[0]:<24} {row[1]:>8} {row[2]:>24} {row[3]:>14}")
        time_ratio = no_change_s / naive_s if naive_s else float("inf")
        get_ratio = no_change_gets / naive_gets if naive_gets else 0.0
        print(f"entries: {len(results)} ({skipped} skipped in the no-change run)")
        print(f"ratio time no-change/naive: {time_ratio:.3f} (goal <= {GOAL})")
        print(f"ratio upstream manifest GETs no-change/naive: {get_ratio:.3f}")
        return 0 if time_ratio <= GOAL and skipped == len(results) else 1
    finally:
        if not args.keep_lab:
            lab.lab_down(workdir)


if __name__ == "__main__":
    sys.exit(main())
