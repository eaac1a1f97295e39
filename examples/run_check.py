"""Main of the examples' py_test targets: check a built archive, found through runfiles.

    run_check.py ARCHIVE CHECK_MODULE

opens ARCHIVE (a path relative to the test's runfiles folder, as ``$(rootpath ...)``
gives it) with ``torchpack.PackageImporter`` and runs ``CHECK_MODULE.check(importer)``,
the example's own expectations (the same ones the Python test suite runs).
"""

import importlib
import os
import sys

import torchpack


def main(archive: str, check_module: str) -> int:
    if not os.path.isfile(archive):
        print(f"{archive}: not in the runfiles of this test", file=sys.stderr)
        return 1
    importer = torchpack.PackageImporter(archive)
    importlib.import_module(check_module).check(importer)
    print(f"{archive}: {check_module}.check passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
