"""Dynamic imports with constant arguments, which the dependency scan must resolve."""

import importlib

pkg_b = __import__("guide_pkgs.dyn.pkg_b", fromlist=["thing"])


def load_a():
    return importlib.import_module("guide_pkgs.dyn.target_a")


def thing_value():
    return pkg_b.thing.B
