"""``python -m torchpack.build TARGET...``."""

import sys

from .cli import main

sys.exit(main())
