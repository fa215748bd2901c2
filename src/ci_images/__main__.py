import sys

from ci_images.cli import main

sys.exit(main())
