"""torchpack's declarative build layer: BUILD.toml targets built hermetically and cached.

One module per concern: :mod:`.labels` (Bazel-style labels), :mod:`.workspace` (root and BUILD
file discovery), :mod:`.schema` (BUILD.toml validation into :class:`~.targets.Target`),
:mod:`.graph` (deps and ordering), :mod:`.cache` (the action cache), :mod:`.action` (one export,
shared with the Bazel rules), :mod:`.runner` (hermetic subprocesses, jobs, --check) and
:mod:`.cli` (``python -m torchpack.build``).
"""
