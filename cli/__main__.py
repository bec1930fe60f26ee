"""``python -m edgeadapt.cli`` (e.g. under ``torchrun``) runs the ``edgeadapt`` command line."""

import sys

from .app import main

sys.exit(main())
