"""``python -m convbackends``: the same command as ``convbackends``."""

import sys

from .cli import main

sys.exit(main())
