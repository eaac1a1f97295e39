from xcompat_pkgs import mocked_dep
from xcompat_pkgs.mocked_dep import thing


def call_thing():
    return thing()


def read_constant():
    return mocked_dep.CONSTANT + 1


def ok():
    return "ok"
