"""``python -m convbackends``: the same command as ``convbackends``."""

import sys

from .tools.cli import main

sys.exit(main())
