"""The check every example runs under `bazel test`."""

def example_check(package_target, lib, data = []):
    """A py_test `<package_target>_test` that opens the archive from the runfiles and runs check.py on it.

    Args:
      package_target: name of the example's `torch_package` target in this package.
      lib: the py_library holding the example's code, which check.py imports.
      data: further files check.py reads.
    """
    native.py_test(
        name = package_target + "_test",
        size = "small",
        srcs = [
            "check.py",
            "//examples:run_check.py",
        ],
        args = [
            "$(rootpath :%s)" % package_target,
            "examples.%s.check" % native.package_name().split("/")[-1],
        ],
        data = [":" + package_target] + data,
        main = "//examples:run_check.py",
        deps = [
            lib,
            "//:torchpack",
        ],
    )
