from . import b
from .b import B
from ..util import tool
from .sub.deep import DEEP
from .sub import deep as deep_mod


def get():
    return b.B, B, tool(), DEEP, deep_mod.up()
