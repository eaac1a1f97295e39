from markupsafe import _speedups


def escape_inner(s):
    return _speedups._escape_inner(s)


def speedups_module():
    return _speedups
