"""The torch_package_test macro: a py_test that loads a built archive and checks it."""

def torch_package_test(name, package, check, deps = [], data = [], **kwargs):
    """A py_test `name` that opens `package`'s archive from its runfiles and calls `check` on it.

    Args:
      name: the test's name.
      package: a `torch_package` target.
      check: "module:function" (":function" defaults to "check"); the function gets a
        `torchpack.PackageImporter` of the archive and fails the test by raising.
      deps: py_library targets that provide the check's module.
      data: further files the check reads.
      **kwargs: passed to py_test (size, tags, timeout...).
    """
    main = Label("//rules/private:package_test_main.py")
    native.py_test(
        name = name,
        srcs = [main],
        main = main,
        args = ["$(rootpath %s)" % package, check],
        data = [package] + data,
        deps = deps + [Label("//:torchpack")],
        **kwargs
    )
