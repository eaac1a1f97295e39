"""Workspace macros of rules_torchpack: call both from your WORKSPACE.

    load("@rules_torchpack//rules:repositories.bzl", "rules_torchpack_dependencies", "rules_torchpack_toolchains")

    rules_torchpack_dependencies()

    rules_torchpack_toolchains()
"""

load("@bazel_tools//tools/build_defs/repo:utils.bzl", "maybe")
load("//rules/private:python.bzl", "torchpack_python_repository")
load("//rules/private:stand_in.bzl", "stand_in_repository")

def rules_torchpack_dependencies():
    """Defines the repositories Bazel 4 needs for Python rules, without network access.

    `@rules_cc`, `@rules_java` and `@remote_coverage_tools` become small local
    stand-ins unless the workspace defined them before this call.
    """
    maybe(
        stand_in_repository,
        name = "rules_cc",
        source = "rules_cc",
        files = ["BUILD.stand_in", "cc/BUILD.stand_in", "cc/defs.bzl"],
    )
    maybe(
        stand_in_repository,
        name = "rules_java",
        source = "rules_java",
        files = ["BUILD.stand_in", "java/BUILD.stand_in", "java/defs.bzl"],
    )
    maybe(
        stand_in_repository,
        name = "remote_coverage_tools",
        source = "remote_coverage_tools",
        files = ["BUILD.stand_in", "coverage_unavailable.sh"],
    )

def rules_torchpack_toolchains(interpreter = None, register = True):
    """Creates `@torchpack_python`, a Python toolchain for an explicit interpreter, and registers it.

    The torchpack builder runs on this interpreter, and so do the workspace's
    `py_binary` and `py_test` targets.  `torch_package` actions also depend on
    `@torchpack_python//:environment.txt` (the interpreter's Python version and
    installed distributions), so changing the environment rebuilds archives.

    Args:
      interpreter: a Python interpreter that can import torch,
        for example a virtual environment's `bin/python`: an absolute path, or
        a path relative to the main workspace (used when it exists; the
        workspace then needs a root BUILD file).
        `--repo_env=TORCHPACK_PYTHON=...` overrides it; when neither gives an
        interpreter, `python3` on `PATH` is used.
      register: whether to register it as the Python toolchain (pass False
        when the workspace registers its own: `torch_package` then runs on
        that one, which needs torch too).
    """
    maybe(
        torchpack_python_repository,
        name = "torchpack_python",
        interpreter = interpreter,
    )
    if register:
        native.register_toolchains("@torchpack_python//:toolchain")
