"""Shared pytest set-up: the sample modules under tests/corpus are importable as top-level
packages, exactly as a user's own code would be when they export it."""

import sys
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
if str(CORPUS) not in sys.path:
    sys.path.insert(0, str(CORPUS))


def pytest_addoption(parser):
    # `./dev test` runs the Bazel tests on .venv's Python only (see `run_tests` in ./dev).
    parser.addoption(
        "--without-bazel", action="store_true",
        help="deselect the tests marked 'bazel' (they drive a real Bazel on this interpreter)",
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--without-bazel"):
        return
    kept = [item for item in items if item.get_closest_marker("bazel") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("bazel") is not None])
        items[:] = kept
