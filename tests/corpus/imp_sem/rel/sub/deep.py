from ...util import tool as tool2
from .. import b

DEEP = "deep"


def up():
    return tool2() + "+" + b.B
