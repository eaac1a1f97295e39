"""Offline stand-in for `@rules_cc//cc:defs.bzl`: forwards to Bazel's native C++ rules.

Only what `@bazel_tools` loads is provided. Each macro takes the same arguments
as the native rule of the same name.
"""

def cc_binary(**attrs):
    """Forwards to `native.cc_binary`."""
    native.cc_binary(**attrs)

def cc_import(**attrs):
    """Forwards to `native.cc_import`."""
    native.cc_import(**attrs)

def cc_library(**attrs):
    """Forwards to `native.cc_library`."""
    native.cc_library(**attrs)

def cc_proto_library(**attrs):
    """Forwards to `native.cc_proto_library`."""
    native.cc_proto_library(**attrs)

def cc_shared_library(**attrs):
    """Forwards to `native.cc_shared_library`."""
    native.cc_shared_library(**attrs)

def cc_test(**attrs):
    """Forwards to `native.cc_test`."""
    native.cc_test(**attrs)

def cc_toolchain(**attrs):
    """Forwards to `native.cc_toolchain`."""
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    """Forwards to `native.cc_toolchain_suite`."""
    native.cc_toolchain_suite(**attrs)

def fdo_prefetch_hints(**attrs):
    """Forwards to `native.fdo_prefetch_hints`."""
    native.fdo_prefetch_hints(**attrs)

def fdo_profile(**attrs):
    """Forwards to `native.fdo_profile`."""
    native.fdo_profile(**attrs)

def objc_import(**attrs):
    """Forwards to `native.objc_import`."""
    native.objc_import(**attrs)

def objc_library(**attrs):
    """Forwards to `native.objc_library`."""
    native.objc_library(**attrs)
