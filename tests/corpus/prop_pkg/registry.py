"""Module-level mutable state: a dict and a set whose iteration order depends on
PYTHONHASHSEED at runtime (the archive must not)."""

DEFAULTS = {"kind": "point", "factor": 2, "names": ("alpha", "beta", "gamma")}
TAGS = {"alpha", "beta", "gamma", "delta", "epsilon"}
FACTOR = DEFAULTS["factor"]


def scale(v):
    return v * FACTOR


def sorted_tags():
    return sorted(TAGS)
