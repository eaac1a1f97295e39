"""Shared pytest set-up: the sample modules under tests/corpus are importable as top-level
packages, exactly as a user's own code would be when they export it."""

import sys
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
if str(CORPUS) not in sys.path:
    sys.path.insert(0, str(CORPUS))
