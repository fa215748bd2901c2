"""``python -m ci_images.lab up|down``: the lab's door (``invoke lab-up`` / ``lab-down`` are the same commands)."""

from ci_images.lab.cli import lab_main

raise SystemExit(lab_main())
