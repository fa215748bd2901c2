"""``python -m ci_images COMMAND``: the door the nox sessions use; ``--help`` lists the commands."""

from ci_images.cli.argv import main

raise SystemExit(main())
