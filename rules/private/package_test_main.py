"""Main of torch_package_test targets: load a built archive and run a check function on it.

    package_test_main.py ARCHIVE MODULE[:FUNCTION]

opens ARCHIVE (relative to the test's runfiles folder, as ``$(rootpath ...)`` gives it)
with ``torchpack.PackageImporter`` and calls ``MODULE.FUNCTION(importer)`` (FUNCTION
defaults to ``check``); the test fails when it raises.
"""

import importlib
import os
import sys

import torchpack


def main(archive: str, check: str) -> int:
    if not os.path.isfile(archive):
        print(f"{archive}: not in the runfiles of this test", file=sys.stderr)
        return 1
    module_name, _, function_name = check.partition(":")
    function = getattr(importlib.import_module(module_name), function_name or "check")
    function(torchpack.PackageImporter(archive))
    print(f"{archive}: {module_name}.{function_name or 'check'} passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
