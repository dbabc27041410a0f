"""Hugging Face Space entry point of the PLUME-lite demo. The demo is the installed
package's plume_lite.apps.demo (requirements.txt installs it); this file only runs it,
with the arguments of `plume-lite demo`:

    python app.py [--checkpoint DIR] [--corpus DIR] [--host H] [--port P] ...
"""

import sys

from plume_lite.apps.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
