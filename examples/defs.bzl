"""The check every example runs under `bazel test`."""

load("//rules:defs.bzl", "torch_package_test")

def example_check(package_target, lib, data = []):
    """A py_test `<package_target>_test` that loads the archive and runs the example's check.py on it.

    Args:
      package_target: name of the example's `torch_package` target in this package.
      lib: the py_library holding the example's code, which check.py imports.
      data: further files check.py reads.
    """
    native.py_library(
        name = package_target + "_check",
        srcs = ["check.py"],
        deps = [lib],
        testonly = True,
    )
    torch_package_test(
        name = package_target + "_test",
        size = "small",
        package = ":" + package_target,
        check = "examples.%s.check:check" % native.package_name().split("/")[-1],
        data = data,
        deps = [":%s_check" % package_target],
    )
