"""``python -m ci_images COMMAND``: the door the nox sessions use; ``--help`` lists the commands.

The signal handlers come first, before the door imports its libraries (a few hundred milliseconds): a SIGTERM or
SIGINT from here on ends the process with 143 or 130, never by the signal (cli/signals.py).
"""

from ci_images.cli import signals

signals.exit_at_once()

from ci_images.cli.argv import main  # after the handlers, on purpose

raise SystemExit(main())
