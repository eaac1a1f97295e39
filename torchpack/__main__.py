"""``python -m torchpack``: the ``torchpack`` command."""

import sys

from .cli import main

sys.exit(main())
