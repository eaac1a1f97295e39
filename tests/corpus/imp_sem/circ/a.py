# a imports b, which imports a back while a is only partially initialised.
from imp_sem.circ import b

A_CONST = 1


def a_val():
    return b.from_a()
