"""`python -m plume_lite …` (and `accelerate launch -m plume_lite …`): the plume-lite CLI."""

import sys

from plume_lite.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
