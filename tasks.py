"""invoke tasks: `invoke --list` names them, `invoke --help TASK` shows a task's options.

Every task is made from the command and option tables in ci_images (cli.table.COMMANDS, commands.options.OPTIONS,
and the lab's lab.cli.LAB_COMMANDS), the same tables `python -m ci_images` and the nox sessions use, so both doors
take the same options with the same checks and exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "src"))  # a checkout works without `pip install -e .`

try:
    from ci_images.cli import signals

    signals.exit_at_once()  # before the libraries load: a signal from here on exits 130/143 (cli/signals.py)
    from ci_images.cli.invoke_door import invoke_collection
    from ci_images.cli.table import COMMANDS
    from ci_images.lab.cli import LAB_COMMANDS
except ImportError as exc:  # pragma: no cover - only without the dependencies
    raise SystemExit(f"ci-images needs its dependencies: pip install -e . ({exc})") from exc

namespace = invoke_collection((*COMMANDS, *LAB_COMMANDS))
