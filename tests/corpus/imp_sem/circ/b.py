from imp_sem.circ import a

SEEN_A_CONST_AT_IMPORT = hasattr(a, "A_CONST")


def from_a():
    # a is complete by the time this runs
    return a.A_CONST + 1
