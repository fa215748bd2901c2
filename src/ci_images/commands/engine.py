"""clean-engine: remove what ended runs of the tool left in the Docker engine, on demand, as every run that uses the
engine does when it starts (engine/runs.py says what counts as ended and what is removed).

A run's containers, its temporary images (``ci-images/IMAGE:TAG-PLATFORM.run-RUNID``) and its marker volume are
removed once its process is gone (read on this host) or, for a run this host cannot see, once it is older than
``--older-than`` hours. Never forced: an image a running run's container uses stays. What build-images named for
you (``ci-images/IMAGE:TAG-PLATFORM``, the target tags) is not a run's leftover and stays too.
"""

from __future__ import annotations

import sys
from typing import Any

from ci_images.commands.options import Options
from ci_images.commands.outcome import emit_json
from ci_images.log import log


def clean_engine(options: Options) -> list[dict[str, Any]]:
    """Remove what ended runs left in the engine; one line (or --json record) per run, exit 0 either way."""
    from ci_images.engine.client import Engine  # the docker SDK loads only for the commands that use it
    from ci_images.engine.runs import DEFAULT_MAX_AGE_S

    hours = DEFAULT_MAX_AGE_S / 3600 if options.older_than is None else options.older_than
    engine = Engine.connect()
    try:
        reaped = engine.reap(max_age_s=hours * 3600)
    finally:
        engine.close()
    records = [r.as_record() for r in reaped]
    if not emit_json(options, records):
        for r in reaped:
            sys.stdout.write(f"{r.describe()}\n")
    removed = sum(len(r.containers) + len(r.images) for r in reaped)
    if reaped:
        log.info(f"removed {removed} container(s) and image(s) left by {len(reaped)} ended run(s)")
    else:
        log.info("nothing left by ended runs in the engine")
    return records
